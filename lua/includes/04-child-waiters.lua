-- More than one parent waiting for one child run. A parent's runWorkflow with an idempotency key that
-- already names a run (started by another parent, or by a client) waits for that run instead of a new one:
--   <root>:pw:<child id>  '<parent id>|<parent's step field>' -> the parent's shard root (hash)
--   <root>:pwq            children whose outcome is still to be handed to the parents in their hash, by
--                         due time (zset; see notify_parent)
-- A run waited for by one parent keeps it in its own fields ('par', 'pf', 'pr'), as every child does: the
-- common case costs nothing more. When a second parent comes, the first moves into the hash too and 'pf'
-- becomes MANY_PARENTS. A parent that comes after the run finished gets the outcome at once.

local function parents_key(root, id) return root .. ':pw:' .. id end

-- The outcome of a finished run as its parents' step record ('S' or 'F', record), or nil when it has not
-- finished. `f`: the run's 'st', 'wf', 'out', 'err'.
local function child_outcome(id, f)
  if not FINAL[f[1]] then return nil end
  if f[1] == 'succeeded' then return 'S', child_record(f[2], id, 'S', f[3] or '') end
  return 'F', child_record(f[2], id, 'F', f[4])
end

-- Hands a finished run's outcome to one parent: written at once when the parent lives in this shard
-- (before the parent parks, its park then finds the record), else through the outbox. `retry_from`: the
-- time from which the outbox waits OUTBOX_RETRY_MS before handing the message to housekeeping.
-- Returns the hand-off to deliver now, or nil.
local function hand_outcome(root, id, parent, field, parent_root, state, json, now, retry_from)
  if parent_root == root then
    deliver_to_run(root, parent, field, state, json, 'child', now)
    return nil
  end
  local message_id = id .. '|' .. parent .. '|' .. field
  outbox_add(root, message_id, parent_root, parent, field, state, json, 'child', retry_from)
  return { parent_root, parent, field, state, json, message_id }
end

-- A run that continued as a new run (ctx.continueAsNew, lua/rerun.lua) stands for its chain's live run: the
-- first run names the latest ('cl'), later ones the next ('cn'). A few hops at most (each continue updates
-- 'cl'); bounded all the same.
local function chain_live(root, id)
  for _ = 1, 64 do
    local c = rcall('HMGET', run_key(root, id), 'cn', 'cl')
    if not c[1] then return id end
    if c[2] and c[2] ~= id and rcall('EXISTS', run_key(root, c[2])) == 1 then id = c[2] else id = c[1] end
  end
  return id
end

-- A parent's step waits for the existing run `id` (wf1_emit found it by its idempotency key). Safe to
-- repeat: a parent already registered is registered again as it was, and an outcome delivered again
-- changes nothing (deliver_to_run leaves a resolved step as it is).
-- Returns the hand-off of the outcome when the run has finished and the parent lives in another shard.
local function wait_for_existing_run(root, id, parent, field, parent_root, now)
  id = chain_live(root, id)
  local run = run_key(root, id)
  local f = rcall('HMGET', run, 'st', 'wf', 'out', 'err', 'par', 'pf', 'pr')
  if not f[1] then return nil end
  local state, json = child_outcome(id, f)
  if state then return hand_outcome(root, id, parent, field, parent_root, state, json, now, now) end
  local own_parent, own_field = f[5], f[6]
  if own_field == MANY_PARENTS then
    rcall('HSET', parents_key(root, id), parent .. '|' .. field, parent_root)
  elseif own_parent ~= parent or own_field ~= field then
    if own_field and own_field ~= '' then
      rcall('HSET', parents_key(root, id), own_parent .. '|' .. own_field, f[7], parent .. '|' .. field, parent_root)
    else
      rcall('HSET', parents_key(root, id), parent .. '|' .. field, parent_root)
    end
    rcall('HSET', run, 'pf', MANY_PARENTS)
  end
  return nil
end

-- Housekeeping: hands the outcomes of finished runs to the parents waiting for them, at most `budget`
-- parents per call. Cross-shard hand-offs go to the outbox due now, so that the same tick hands them to
-- its caller (overdue_handoffs). Returns how many parents were told, and whether some are left.
local function tell_waiting_parents(root, now, budget)
  local ids = rcall('ZRANGEBYSCORE', root .. ':pwq', '-inf', now, 'LIMIT', 0, budget)
  local told = 0
  for _, id in ipairs(ids) do
    local key = parents_key(root, id)
    local f = rcall('HMGET', run_key(root, id), 'st', 'wf', 'out', 'err')
    local state, json = child_outcome(id, f)
    -- not finished (retried since): its next end queues it again
    if not state then
      rcall('ZREM', root .. ':pwq', id)
    else
      local left = budget - told
      local entries
      if rcall('HLEN', key) <= left then
        entries = rcall('HGETALL', key)
      else
        entries = rcall('HRANDFIELD', key, left, 'WITHVALUES')
      end
      local fields = {}
      for i = 1, #entries, 2 do
        local waiter = entries[i]
        local bar = string.find(waiter, '|', 1, true)
        hand_outcome(root, id, string.sub(waiter, 1, bar - 1), string.sub(waiter, bar + 1), entries[i + 1], state, json, now,
          now - OUTBOX_RETRY_MS)
        fields[#fields + 1] = waiter
      end
      told = told + #fields
      if #fields > 0 then rcall('HDEL', key, unpack(fields)) end
      if rcall('EXISTS', key) == 0 then rcall('ZREM', root .. ':pwq', id) end
    end
    if told >= budget then return told, true end
  end
  return told, #ids >= budget
end
