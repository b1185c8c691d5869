-- wf1_tick: the shard's housekeeping, run by workers when something is due: wakes runs whose timer is
-- due, takes runs back from workers whose lease expired, fails runs past their deadline, tells the parents
-- of a run that several wait for its outcome, releases the nodes of graphs (includes/05-graph.lua), deletes finished runs past their retention, and (on the event
-- shard) goes on with an event's fan-out to its waiters whose sender stopped (see wf1_send_event_more). Each
-- part handles at most ARGV[1] entries per call (a fan-out one page of its waiters), so a large backlog is
-- worked off in several short calls instead of blocking Redis.
-- KEYS[1]  shard root
-- ARGV[1]  batch size per part
-- Reply: { server now, ms until the next due entry (-1 if none), 1 if a part had more than a batch,
--          { { message id, message JSON }, ... } overdue hand-offs for the caller to deliver (wf1_deliver),
--          { run id, cursor } a cancel cascade whose caller stopped, for the caller to go on with from that
--          cursor (wf1_cancel_more), or {} }
local LEASE_EXPIRED = '{"name":"LeaseExpiredError","message":"The worker executing this attempt stopped renewing its lease (crashed, stalled or disconnected)."}'
local RUN_TIMEOUT = '{"name":"TimeoutError","message":"The run passed its whole-run deadline (timeoutMs)."}'

-- Works off up to `batch` runs due by `upto` on one of the shard's schedules (':leases', ':deadlines',
-- ':expiry'): each is taken off it, then `work(id, run key, fields)` gets the named fields of its hash.
-- Returns how many were due. `fields` is one of the constant lists below (never a user's list).
local function for_due_runs(root, schedule, upto, batch, fields, work)
  local ids = rcall('ZRANGEBYSCORE', root .. schedule, '-inf', upto, 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    rcall('ZREM', root .. schedule, id)
    local run = run_key(root, id)
    work(id, run, rcall('HMGET', run, unpack(fields)))
  end
  return #ids
end

-- Due scheduled runs are the common case of a backlog (delayed emits): one ZREM and one notify per call.
local function wake_due_timers(root, now, batch)
  local ids = rcall('ZRANGEBYSCORE', root .. ':timers', '-inf', now, 'LIMIT', 0, batch)
  if #ids == 0 then return 0, 0 end
  rcall('ZREM', root .. ':timers', unpack(ids))
  local woken = 0
  for _, id in ipairs(ids) do
    local run = run_key(root, id)
    local f = (string.byte(id, 1) == 126 and flow_timer_due(root, id, now)) and {} or rcall('HMGET', run, 'st', 'wf', 'pri', 'ww', 'fk', 'dk')
    if f[1] == 'waiting' then
      wake_run(root, id, f[2], f[3], now, 'timer', nil, nil, nil, nil, f[4] or nil)
    elseif f[1] == 'queued' and f[4] then
      -- a warm run whose worker did not claim it within its window (busy, stopped or dead): to its ready
      -- set, for any worker (see delta_key in includes/01-common.lua). It stays warm: if its worker claims
      -- it after all, the claim still sends only the delta. One claimed meanwhile left its sticky queue.
      if rcall('ZREM', sticky_key(root, select(3, warm_parts(f[4]))), id) == 1 then make_ready(root, id, f[2], f[3], now) end
    elseif f[1] == 'scheduled' then
      rcall('HSET', run, 'st', 'queued')
      count_move(root, f[2], id, f[1], 'queued')
      if f[6] then debounce_close(root, f[2], id, f[6]) end
      if f[5] then
        ready_run(root, id, f[2], f[3], now)
      else
        rcall('ZADD', run_ready_key(root, id, f[2]), ready_score(f[3], now), id)
        woken = woken + 1
      end
      history(root, id, now, 'due', { reason = 'timer' })
    end
  end
  return #ids, woken
end

local LEASE_FIELDS = { 'st', 'lu', 'att', 'max', 'wf', 'pri', 'fin', 'wk' }
local function reclaim_expired_leases(root, now, batch)
  return for_due_runs(root, ':leases', now - 1, batch, LEASE_FIELDS, function(id, run, f)
    if f[1] == 'canceled' and f[7] == 'hook' and tonumber(f[2]) < now then
      -- The worker running the @OnFailure of a canceled run died: another one runs it.
      rcall('HSET', run, 'tok', '')
      make_ready(root, id, f[5], f[6], now)
      history(root, id, now, 'lease-expired', { workerId = f[8] })
      rcall('HINCRBY', root .. ':lx', f[5], 1)
    elseif EXECUTING[f[1]] and tonumber(f[2]) < now then
      drop_staged_waits(root, id, run)
      local attempt = tonumber(f[3])
      if f[7] then
        rcall('HSET', run, 'st', 'queued')
      elseif attempt < tonumber(f[4]) then
        rcall('HSET', run, 'st', 'queued', 'att', attempt + 1, 'err', LEASE_EXPIRED)
      else
        rcall('HSET', run, 'st', 'queued', 'fin', 'failed', 'err', LEASE_EXPIRED)
      end
      count_move(root, f[5], id, f[1], 'queued')
      ready_run(root, id, f[5], f[6], now)
      history(root, id, now, 'lease-expired', { attempt = attempt, workerId = f[8] })
      -- every lease that expires is taken back here, whether its worker died or stalled: the count the
      -- metrics read (workflow_lease_expiries_total), per workflow, for the life of the shard
      rcall('HINCRBY', root .. ':lx', f[5], 1)
    end
  end)
end

local DEADLINE_FIELDS = { 'st', 'wf', 'pri', 'fin' }
local function fail_past_deadline(root, now, batch)
  return for_due_runs(root, ':deadlines', now, batch, DEADLINE_FIELDS, function(id, run, f)
    if f[1] and not FINAL[f[1]] and not f[4] then
      -- The run's final failure (compensations, @OnFailure) is executed by the next worker to claim it.
      rcall('HSET', run, 'fin', 'failed', 'err', RUN_TIMEOUT, 'tok', '')
      if EXECUTING[f[1]] then
        rcall('ZREM', root .. ':leases', id)
        notify_workers(root, 'a' .. id .. '|timeout')
      else
        rcall('ZREM', root .. ':timers', id)
      end
      if f[1] ~= 'queued' then
        rcall('HSET', run, 'st', 'queued')
        forget_wait(root, id, run)
        count_move(root, f[2], id, f[1], 'queued')
        ready_run(root, id, f[2], f[3], now)
      end
      history(root, id, now, 'timed-out', nil, RUN_TIMEOUT)
    end
  end)
end

-- The first run of a chain made by continue-as-new (lua/rerun.lua; 'cl' names the latest) is kept while the
-- chain lives, so that its handle, its idempotency key and its parents still reach the live run: as a stub
-- (its run hash and history; its step records go at its retention) until the last run of the chain is
-- deleted. Rechecked this often while the chain runs.
local CHAIN_RECHECK_MS = 60000

-- Returns true when the chain `id` heads is still to be kept (and reschedules it), false when it can go.
local function keeps_chain_head(root, id, now)
  local live = chain_live(root, id)
  if live == id then return false end
  local live_status = rcall('HGET', run_key(root, live), 'st')
  if not live_status then return false end
  rcall('UNLINK', steps_key(root, id))
  if FINAL[live_status] then
    -- goes with the last run of the chain
    local due = tonumber(rcall('ZSCORE', root .. ':expiry', live))
    if not due or due <= now then return false end
    rcall('ZADD', root .. ':expiry', ms(due), id)
  else
    rcall('ZADD', root .. ':expiry', ms(now + CHAIN_RECHECK_MS), id)
  end
  return true
end

local EXPIRY_FIELDS = { 'wf', 'st', 'ik', 'cl', 'fin' }
local function delete_expired_runs(root, now, batch)
  return for_due_runs(root, ':expiry', now, batch, EXPIRY_FIELDS, function(id, run, f)
    if f[4] and keeps_chain_head(root, id, now) then
      return
    elseif f[1] and rcall('ZSCORE', root .. ':pwq', id) then
      -- parents still to be told its outcome (see tell_waiting_parents): kept a little longer
      rcall('ZADD', root .. ':expiry', ms(now + 1000), id)
    elseif f[1] and not release_shared_payloads(root, id) then
      -- a run whose records named many shared payloads goes once the last is released (see release_shared_payloads)
      rcall('ZADD', root .. ':expiry', ms(now), id)
    elseif f[1] then
      -- a canceled run whose @OnFailure has not run gives back the slot of its flow key it took (lua/cancel.lua)
      if f[5] == 'hook' then flow_release(root, id, f[1], now, true) end
      -- UNLINK: a run's step records, history and children can hold 10,000 entries each, freed in the
      -- background instead of within this call
      rcall('UNLINK', run, steps_key(root, id), hist_key(root, id), awaited_key(root, id), children_key(root, id), parents_key(root, id), delta_key(root, id),
        published_key(root, id))
      drop_graphs(root, id)
      -- Builds before 28 also kept every run in an index of its workflow's runs ('idx').
      rcall('ZREM', root .. ':idx:' .. f[1], id)
      if f[3] and f[3] ~= '' and rcall('HGET', root .. ':ik:' .. f[1], f[3]) == id then
        rcall('HDEL', root .. ':ik:' .. f[1], f[3])
      end
      count_move(root, f[1], id, f[2], nil)
    end
  end)
end

-- Hand-offs to other shards that were not acknowledged in time (the worker that should have delivered
-- them crashed): handed to this caller to deliver, and due again later in case it crashes too.
-- A call hands out messages of at most about HANDOFF_BYTES in all (an event's record carries its payload).
local HANDOFF_BYTES = 262144

local function overdue_handoffs(root, now, batch)
  local ids = rcall('ZRANGEBYSCORE', root .. ':outbox', '-inf', now, 'LIMIT', 0, batch)
  local messages, bytes, records = {}, 0, {}
  for _, message_id in ipairs(ids) do
    if bytes > HANDOFF_BYTES then break end
    local message = rcall('HGET', root .. ':obx', message_id)
    -- a message that names an event gets the event's record (none when the event expired: dropped)
    if message then message = event_outbox_message(root, message_id, message, records) end
    if message == '' then
      rcall('ZREM', root .. ':outbox', message_id)
      rcall('HDEL', root .. ':obx', message_id)
    elseif message then
      rcall('ZADD', root .. ':outbox', now + OUTBOX_RETRY_MS, message_id)
      messages[#messages + 1] = { message_id, message }
      bytes = bytes + #message
    else
      rcall('ZREM', root .. ':outbox', message_id)
    end
  end
  return messages
end

local function tick(keys, argv)
  local root = keys[1]
  local batch = tonumber(argv[1])
  local now = now_ms()
  local more = 0
  local seen, woken = wake_due_timers(root, now, batch)
  if seen >= batch then more = 1 end
  if woken > 0 then notify_workers(root, 'r') end
  if reclaim_expired_leases(root, now, batch) >= batch then more = 1 end
  if fail_past_deadline(root, now, batch) >= batch then more = 1 end
  -- before the deletions (a run kept for 0 ms still tells its parents) and the outbox (whose messages to
  -- other shards this adds, due now)
  local _, parents_left = tell_waiting_parents(root, now, batch)
  if parents_left then more = 1 end
  if release_graph_nodes(root, now, math.min(batch, GRAPH_RELEASES_PER_TICK)) then more = 1 end
  if delete_expired_runs(root, now, batch) >= batch then more = 1 end
  -- An event's fan-out whose sender stopped: its next page of waiters goes to the outbox due now, so that
  -- this call hands their deliveries to the caller below (one page per call: a page is EVENT_WAITERS_PER_CALL),
  -- and the fan-out stays due, for the next call.
  local stalled = rcall('ZRANGEBYSCORE', root .. ':fanout', '-inf', now, 'LIMIT', 0, 1)
  if stalled[1] then
    continue_fanout(root, stalled[1], now, now, {})
    more = 1
  end
  local handoffs = overdue_handoffs(root, now, batch)
  local cascade = {}
  local stopped = rcall('ZRANGEBYSCORE', root .. ':cascade', '-inf', now, 'LIMIT', 0, 1)
  if stopped[1] then
    local cursor = rcall('HGET', run_key(root, stopped[1]), 'cc')
    if cursor then
      rcall('ZADD', root .. ':cascade', ms(now + OUTBOX_RETRY_MS), stopped[1])
      cascade = { stopped[1], cursor }
    else
      rcall('ZREM', root .. ':cascade', stopped[1])
    end
  end
  local next_due = -1
  for _, set in ipairs({ ':timers', ':leases', ':deadlines', ':expiry', ':outbox', ':pwq', ':fanout', ':cascade', ':gq' }) do
    local head = rcall('ZRANGE', root .. set, 0, 0, 'WITHSCORES')
    if head[2] and head[1] ~= SKIPLIST_SENTINEL then
      local wait = math.max(0, tonumber(head[2]) - now)
      if next_due < 0 or wait < next_due then next_due = wait end
    end
  end
  return { now, next_due, more, handoffs, cascade }
end

redis.register_function('wf1_tick', tick)
