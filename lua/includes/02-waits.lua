-- Step records are stored as '<server ms>|<state>|<record JSON>', state being one of
--   S succeeded, F failed, W waiting (a sleep, child or event the run waits for), C compensated.
-- The state sits outside the JSON so that functions can read it without decoding anything.

local function record_state(stored)
  if not stored then return nil end
  return string.match(stored, '^%d+|(%a)|')
end

-- `now_text`: the server time as ms() writes it.
local function record_text(now_text, state, json)
  return now_text .. '|' .. state .. '|' .. json
end

-- `now_text`: the server time as ms() writes it.
local function store_record(root, id, field, now_text, state, json)
  rcall('HSET', steps_key(root, id), field, record_text(now_text, state, json))
end

local function awaited_key(root, id) return root .. ':aw:' .. id end
local function children_key(root, id) return root .. ':ch:' .. id end

-- What a run that leaves 'waiting' no longer waits for: its wait fields and its awaited set. Every way
-- out of 'waiting' calls this, so a park starts from nothing (see wf1_park). `keep_awaited`: the set is
-- gone already (see wake_run).
local function forget_wait(root, id, run, keep_awaited)
  rcall('HDEL', run, 'wait', 'wn', 'ws')
  if not keep_awaited then rcall('DEL', awaited_key(root, id)) end
end

-- A run taken from its worker (lease expired, released, retried) forgets the waits a park of it staged
-- and did not finish (see wf1_park_stage): its next attempt parks from nothing, as after any park.
local function drop_staged_waits(root, id, run)
  if rcall('HEXISTS', run, 'sg') == 1 then
    rcall('DEL', awaited_key(root, id))
    rcall('HDEL', run, 'sg', 'wn', 'sk', 'sc', 'se', 'sd')
  end
end

-- Moves a waiting run back to its ready set. The caller checked that it is waiting. `drained`: the run
-- waited only for children ('ws', see wf1_park) and the last of them has been delivered, so its awaited
-- set is empty (Redis deleted it) and it has no timer: neither needs a call.
-- `handover`: the slot a completion is about to refill (see takes_over in includes/03-claim.lua), or nil.
-- When that refill can take the run's workflow, the run is not queued: it stays 'waiting', without its
-- wait, until the same call leases it to the completing worker (claim_runs). A parent whose last child just
-- finished is then executed at once, by the worker that finished that child, instead of waiting behind the
-- ready set and being claimed by a later call: the ready entry, the notice to workers, the 'queued' status
-- and the pop are spared (bench/NOTES.md, fifteenth round).
-- `warm`: the run's 'ww' (see delta_key in 01-common.lua), or nil: a warm run goes to its worker's sticky
-- queue, and to a completion's slot only when that completion is its worker's.
local function wake_run(root, id, wf, priority, now, reason, step, implied, drained, handover, warm)
  local run = run_key(root, id)
  forget_wait(root, id, run, drained)
  if not drained then rcall('ZREM', root .. ':timers', id) end
  local group = handover and not handover.id and handover.groups[wf]
  -- a pinned run goes only to a worker of its version (includes/00-versions.lua)
  if group and not claims_version_of(group, run) then group = nil end
  if group and warm and select(3, warm_parts(warm)) ~= handover.worker then group = nil end
  if group then
    handover.id, handover.group = id, group
  else
    rcall('HSET', run, 'st', 'queued')
    count_move(root, wf, id, 'waiting', 'queued')
    -- a flow-controlled run takes a slot of its key again (ready_run), so it is not kept warm
    if warm and rcall('HEXISTS', run, 'fk') == 0 then make_ready_warm(root, id, priority, now, warm) else ready_run(root, id, wf, priority, now) end
  end
  history(root, id, now, 'woken', { reason = reason, step = step }, nil, implied)
end

-- Writes the outcome of a child run or an event into the waiting run's step record (unless that step is
-- already resolved: a repeated delivery changes nothing) and wakes the run when its wait is over: at
-- once for an event or a failed child, after the last child for children that succeeded.
-- Returns 1 when the record was written, 0 when it was already resolved (or the run is gone).
-- `now_text`: ms(now), when the caller has made it already.
-- `handover`: as for wake_run.
local function deliver_to_run(root, id, field, state, json, kind, now, now_text, handover)
  local run = run_key(root, id)
  -- What only a wake needs (the workflow, priority, 'hn' and 'ws') is read when the run wakes: of a parent's
  -- children, only the last delivery wakes it, and each field HMGET looks for costs about 2,000 instructions.
  local f = rcall('HMGET', run, 'st', 'ep', 'ww')
  if not f[1] then return 0 end
  local current = rcall('HGET', steps_key(root, id), field)
  if current and record_state(current) ~= 'W' then return 0 end
  -- The run's epoch (raised by every retry) is kept with the outcome, and so is the generation of the
  -- waiting record: a failure seen by an earlier epoch is started again, under the next generation.
  local generation = '0'
  -- A plain find first: an unanchored pattern tries to match at every byte of the record (about 9,000
  -- instructions per child delivery, measured with callgrind; a child's waiting record has no generation
  -- until its first retry).
  local at = current and string.find(current, '"g":', 1, true)
  if at then generation = string.match(current, '^"g":(%d+)', at) or '0' end
  store_record(root, id, field, now_text or ms(now), state,
    string.sub(json, 1, -2) .. ',"pa":' .. (f[2] or '0') .. ',"g":' .. generation .. '}')
  -- A child that finished as its parent's wait expects counts down the open children: it succeeded, or it
  -- failed under onFailure 'continue' ('"oc":1', see wf1_park); one the handler races (waitForAny, '"any":1')
  -- wakes the run as an event does. Plain finds (see above), and only for a failure or a raced run.
  local counts_down = kind == 'child'
  if counts_down and current then
    if state == 'F' then counts_down = string.find(current, '"oc":1', 1, true) ~= nil end
    if counts_down and string.find(current, '"any":1', 1, true) then counts_down = false end
  elseif state ~= 'S' then
    counts_down = false
  end
  -- a run kept warm by its worker: the record is one the worker has not seen (see delta_key)
  if f[3] then rcall('SADD', delta_key(root, id), field) end
  if f[1] == 'waiting' then
    if rcall('SREM', awaited_key(root, id), field) == 1 then
      local wake = not counts_down or rcall('HINCRBY', run, 'wn', '-1') <= 0
      if wake then
        local w = rcall('HMGET', run, 'wf', 'pri', 'hn', 'ws')
        -- 'ws': the run waited for children only; the last one finished (see wake_run)
        local drained = counts_down and w[4] == '1'
        wake_run(root, id, w[1], w[2], now, kind, field, w[3] or false, drained, handover, f[3])
      end
    end
  elseif rcall('SREM', awaited_key(root, id), field) == 1 then
    -- a wait staged by a park that is still on its way (see wf1_park_stage): the park counts it as done
    if counts_down then rcall('HINCRBY', run, 'wn', '-1') else rcall('HSET', run, 'sk', '1') end
  end
  return 1
end

-- Hand-offs to another shard go through this shard's outbox: the message is kept until the receiving
-- shard has taken it (wf1_ack), and housekeeping hands overdue messages to a worker to deliver again.
local OUTBOX_RETRY_MS = 5000

local function outbox_add(root, message_id, target_root, target_id, field, state, json, kind, now)
  rcall('ZADD', root .. ':outbox', now + OUTBOX_RETRY_MS, message_id)
  rcall('HSET', root .. ':obx', message_id,
    cjson.encode({ t = target_root, r = target_id, f = field, s = state, x = json, k = kind }))
end

-- The child's outcome as the parent's step record. The output and error texts are JSON made by the
-- client; they are embedded as they are.
local function child_record(wf, child_id, state, payload)
  local head = '{"k":"child","f":' .. cjson.encode('child:' .. wf) .. ',"id":' .. cjson.encode(child_id)
  if state == 'S' then return head .. ',"s":"succeeded","r":' .. (payload ~= '' and payload or 'null') .. '}' end
  return head .. ',"s":"failed","e":' .. payload .. '}'
end

-- A run's 'pf' when more than one parent waits for it (an idempotency key named it for a second parent):
-- the parents and their steps are then in its waiting-parents hash (see includes/04-child-waiters.lua).
-- A step field is never '*' ('<occurrence>:<name>').
local MANY_PARENTS = '*'

-- A run's 'pf' when it is a node of a graph (ctx.step.graph): no parent step waits for it, the graph does
-- (its 'par' names the parent, the graph and the node). Set in 'pf' because every final transition reads 'pf' already,
-- so an ordinary run pays nothing for graphs. graph_node_done is defined in includes/05-graph.lua.
local GRAPH_NODE = '#'
local graph_node_done

-- A finished child tells its parent: directly when both live in this shard, else through the outbox.
-- Returns the hand-off to deliver now ({ target root, parent id, field, state, record, message id }) or nil.
-- `parent`, `field`, `parent_root`: the run's 'par', 'pf' and 'pr' when the caller has read them (a
-- caller that has calls this only when 'pf' is set); without `field` they are read here.
-- `handover`: as for wake_run (a parent in this shard only).
local function notify_parent(root, id, wf, state, payload, now, parent, field, parent_root, now_text, handover)
  if not field then
    local f = rcall('HMGET', run_key(root, id), 'par', 'pf', 'pr')
    parent, field, parent_root = f[1], f[2], f[3]
  end
  if not field or field == '' then return nil end
  if field == GRAPH_NODE then
    graph_node_done(root, id, state, payload, now)
    return nil
  end
  if field == MANY_PARENTS then
    -- however many they are, housekeeping tells them in bounded chunks, starting now
    rcall('ZADD', root .. ':pwq', ms(now), id)
    notify_workers(root, 't' .. ms(now))
    return nil
  end
  local json = child_record(wf, id, state, payload)
  if parent_root == root then
    deliver_to_run(root, parent, field, state, json, 'child', now, now_text, handover)
    return nil
  end
  outbox_add(root, id, parent_root, parent, field, state, json, 'child', now)
  return { parent_root, parent, field, state, json, id }
end
