-- A row whose usage record reported impossible token counts (negative, above ten million for
-- one request, or a total that is not prompt + completion) is kept, with its counts corrected
-- (negative → 0, absurd → NULL) and the reason here; NULL for a plausible row. Never edit once
-- landed.

ALTER TABLE access_logs ADD COLUMN anomaly TEXT;
