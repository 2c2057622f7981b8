-- 005: what each token is for, and when it was last used.
-- `label` is set by the vendor's operator at creation (letters, digits, space and . _ -, at most 40; checked
-- in collector/web/tokens.py), never by an install. `last_used_on` is the UTC day the token last opened a route,
-- written at most once a day per token from the collector's in-memory token copy (never on every request).

ALTER TABLE tokens ADD COLUMN label VARCHAR;
ALTER TABLE tokens ADD COLUMN last_used_on DATE;
