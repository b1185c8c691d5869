-- Event payloads shared by the runs of a shard that received one event (ARCHITECTURE.md section 7: an event
-- to 10,000 waiters kept its payload 10,000 times, once in each run's step record). A sender of a large
-- payload asks for records by reference (wf1_send_event's ARGV[6]): each waiting run's record then names
-- the event ('"rp":"<event id>"' in place of '"r":<payload>'), and the shard keeps the payload once:
--   <root>:evp:<event id>   the payload (string)
--   <root>:evr              event id -> how many runs of this shard hold a record naming it (hash)
--   <root>:er:<run id>      the events a run's records name (set), released when the run is deleted
-- Readers put the payload back in place of the name (WorkflowStore.withPayloads) before parsing a record.

-- A run's record names the event `ref`: the payload is kept (once per shard) while any such run exists.
local function hold_shared_payload(root, id, ref, payload)
  if rcall('SADD', root .. ':er:' .. id, ref) == 0 then return end
  if rcall('HINCRBY', root .. ':evr', ref, '1') == 1 then rcall('SET', root .. ':evp:' .. ref, payload) end
end

-- Payloads released per deleted run and call: a run past it stays due for deletion (see delete_expired_runs).
local SHARED_PAYLOADS_PER_CALL = 64

-- The run is being deleted: releases up to SHARED_PAYLOADS_PER_CALL of the payloads its records named, and
-- says whether all are released (the run can go).
local function release_shared_payloads(root, id)
  local held = root .. ':er:' .. id
  local refs = rcall('SPOP', held, SHARED_PAYLOADS_PER_CALL)
  for _, ref in ipairs(refs) do
    if rcall('HINCRBY', root .. ':evr', ref, '-1') <= 0 then
      rcall('HDEL', root .. ':evr', ref)
      rcall('UNLINK', root .. ':evp:' .. ref)
    end
  end
  return #refs < SHARED_PAYLOADS_PER_CALL or rcall('EXISTS', held) == 0
end
