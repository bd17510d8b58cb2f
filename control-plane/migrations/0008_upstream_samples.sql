-- vLLM's own token counters, scraped from each upstream's /metrics for reconciliation with the
-- access log: the sum over engines of vllm:prompt_tokens_total and vllm:generation_tokens_total
-- for one model name at one instant. Pruned by the access log's age limit. Never edit once
-- landed.

CREATE TABLE upstream_samples (
    model            TEXT    NOT NULL,
    upstream         TEXT    NOT NULL, -- the vLLM base URL as configured
    at_ms            INTEGER NOT NULL, -- when scraped, Unix milliseconds
    prompt_total     INTEGER NOT NULL,
    generation_total INTEGER NOT NULL,
    PRIMARY KEY (model, upstream, at_ms)
) WITHOUT ROWID;
CREATE INDEX upstream_samples_at ON upstream_samples (at_ms);
