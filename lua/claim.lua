-- wf1_claim: takes up to N ready runs of the given workflows and leases them to the caller.
-- KEYS[1]  shard root
-- ARGV[1]  worker id               ARGV[2] how many runs at most
-- ARGV[3]  lease in ms             ARGV[4] claim id (random; half of the fencing token)
-- ARGV[5]  retention in ms of a run failed here because its stored data is damaged
-- ARGV[6]  the workflows this worker can execute, in the order to try them, packed in one text: per
--          workflow '<maxConcurrency>,<maxAttempts>,<timeoutMs>,<name length>:<name>' (maxConcurrency 0 =
--          unlimited, timeoutMs 0 = none). Builds before 31 send ARGV[6..] as groups of 4 instead: name,
--          maxConcurrency, maxAttempts, timeoutMs; both are read.
-- Reply: { server now (ms), run, run, ... } where each run is
--   { id, workflow, input, attempt, maxAttempts, token, createdAt, parentId,
--     finalizing ('' | 'failed' | 'canceled' | 'hook': a canceled run whose @OnFailure is to run),
--     error (JSON or ''), { stepField, stepRecord, ... }, epoch (raised by every retry) }
--   or, packed (ARGV[2] ends with 'p'), { head, input, error, { stepField, stepRecord, ... } } where head
--   is id, token, parentId, finalizing, attempt, maxAttempts, createdAt, epoch and workflow joined by
--   newlines (the workflow last, so that a newline in its name cannot shift the others; the user's input
--   and error stay elements of their own); or flat (ARGV[2] ends with 'f'): { server now, head, input,
--   error, n, stepField, stepRecord, ... (n elements), head, ... } with the same head. Or flat with paged
--   records (ARGV[2] ends with 'r'): as flat, but a run whose records do not all fit one page has
--   '<n>:<HSCAN cursor>' in place of n, and the caller reads the rest of its records from that cursor.
-- Concurrency limits count the workflow's executing runs in this shard: a workflow with maxConcurrency
-- keeps all its runs in one shard, so the count is cluster-wide.
-- (The claiming itself is claim_runs, in includes/03-claim.lua.)

local function claim(keys, argv)
  local reply = { now_ms() }
  claim_runs(keys[1], argv, 1, reply[1], reply)
  return reply
end

redis.register_function('wf1_claim', claim)
