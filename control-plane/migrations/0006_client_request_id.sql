-- Rows stay keyed by the gateway's own request id (Envoy generates one for every request and
-- drops any client-sent x-request-id); the client's id, sent as x-client-request-id, is kept
-- beside it for tracing only and never keys anything. Never edit once landed.

ALTER TABLE access_logs ADD COLUMN client_request_id TEXT;

-- `GET /api/logs?clientRequestId=`: only rows that carry one are indexed.
CREATE INDEX access_logs_client_request ON access_logs (client_request_id, started_at_ms)
    WHERE client_request_id IS NOT NULL;
