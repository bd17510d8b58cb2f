-- Rows without identity (no app, no user, no tokens: requests refused before authentication,
-- such as 401s) are capped apart from accounted rows and pruned first, so that junk traffic
-- cannot push billing rows out of the log. This index finds them, oldest first; the condition
-- must match `retention::UNAUTHENTICATED` exactly. Never edit once landed.

CREATE INDEX access_logs_unauthenticated ON access_logs (started_at_ms)
    WHERE app_id IS NULL AND user_id IS NULL AND IFNULL(prompt_tokens, 0) = 0
      AND IFNULL(completion_tokens, 0) = 0 AND IFNULL(total_tokens, 0) = 0;
