-- wf1_deliver: a hand-off arriving from another shard: a child's outcome for its parent, or an event for
-- a run that waits for it. Idempotent: a step already resolved is left as it is.
-- KEYS[1]  the receiving run's shard root
-- ARGV[1]  run id    ARGV[2] step field    ARGV[3] state ('S' | 'F')    ARGV[4] record (JSON text)
-- ARGV[5]  kind ('child' | 'event')
-- ARGV[6]  optional, with ARGV[7]: the event's payload, when the record names the event ARGV[7] instead of
--          carrying it (see includes/04-shared-payloads.lua)
-- Reply: 1 when the record was written, 0 when the step was already resolved or the run is gone.
local function deliver(keys, argv)
  local written = deliver_to_run(keys[1], argv[1], argv[2], argv[3], argv[4], argv[5], now_ms())
  if written == 1 and argv[7] and argv[7] ~= '' then hold_shared_payload(keys[1], argv[1], argv[7], argv[6]) end
  return written
end

-- wf1_ack: the sending shard forgets hand-offs that were delivered.
-- KEYS[1]  the sending shard root
-- ARGV[1..] message ids
-- Reply: number of messages removed.
local function ack(keys, argv)
  local removed = 0
  for _, message_id in ipairs(argv) do
    removed = removed + rcall('ZREM', keys[1] .. ':outbox', message_id)
    rcall('HDEL', keys[1] .. ':obx', message_id)
  end
  return removed
end

redis.register_function('wf1_deliver', deliver)
redis.register_function('wf1_ack', ack)
