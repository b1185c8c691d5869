-- Flow control: per-key concurrency, rate limits and fairness (the workflow options concurrency,
-- rateLimit, fairness; docs in README "Flow control").
--
-- A run with a flow key ('fk', computed by the client at emit) enters its workflow's ready set only when
-- its key has room; otherwise it waits, 'queued', in its key's held set, and the transition that makes
-- room (a completion, failure, park or cancel of a run of the key, the claim of a rate-limited or fair
-- key's run, or the key's rate window opening, through the shard's timers) moves the key's next run to
-- the ready set in the same call. The claim itself is unchanged for concurrency: every run in a ready set
-- may be claimed, so neither the number of keys nor of held runs costs a claim anything.
-- Runs made in Redis from a keyed run enter the same way, with its key: the successor of a continue-as-new
-- and a fork (rerun.lua), a graph's node (the key computed by the client, includes/05-graph.lua), and the
-- compensations of a canceled run without a slot (cancel.lua, through ready_run). The @OnFailure of a run
-- canceled at once runs under the run's slot, kept for it (flow_release's keep_slot).
--
-- Keys (all in the runs' shard: runs of one key are routed to one shard):
--   <root>:f:<wf>:<key>   the key's state (hash, created on demand, deleted when the key has no runs):
--                         'n' runs holding a slot (in the ready set or executing), 'p' of them in the ready
--                         set (kept for capped keys only, see below), 'q' the spec, 'b' why held runs
--                         wait now ('' | 'concurrency' | 'rateLimit')
--   <root>:fh:<wf>:<key>  held runs (zset, ready-set scores: priority, then time; members: run ids, '*'
--                         before a pinned run's, see held_member)
--   <root>:fr:<wf>:<key>  start times of the last `limit` claims (list, newest first), expires after
--                         the period: a sliding log, so that no `periodMs` window ever sees more starts
--   <root>:hb:<wf>        held runs per reason (hash): what stats show (see held_reason)
-- Run hash: 'fk' the key, 'fq' the spec, 'fs' the slot: 'h' held (or, for an uncapped key, admitted since:
-- see slot_of), 'p' admitted and in the ready set (capped keys), '1' holds a slot.
-- Spec text (made by the client): '<concurrency limit>,<rate limit>,<rate period ms>,<fair 0|1>'.
-- A capped key (rate limit or fairness) has at most one run in the ready set at a time and its next run
-- is admitted when that one is claimed: the sliding log is then checked at every start, and a fair key's
-- next run goes to the back of the ready set (round-robin between keys, priority first).
-- Parked runs (sleep, events, children, retry backoff) give their slot back and take a new one when woken.

-- Only what other files call is a local of the library's main chunk, which Lua caps at 200 locals (main
-- and flow control together pass it): the rest of this file is one block, not indented for it.
local flow_enqueue, ready_run, flow_claimed, flow_timer_due, queue_room
local debounce_into_pending, debounce_open, debounce_close
do

local FLOW_ADMIT_PER_CALL = 100

local function flow_key(root, wf, key) return root .. ':f:' .. wf .. ':' .. key end
local function flow_held_key(root, wf, key) return root .. ':fh:' .. wf .. ':' .. key end
local function flow_log_key(root, wf, key) return root .. ':fr:' .. wf .. ':' .. key end
local function held_counts_key(root, wf) return root .. ':hb:' .. wf end
-- A run in its key's held set: its id, with '*' before it for a pinned run (whose 'v' starts with '*'), so
-- that admitting an unpinned run, the common case, needs no read of its version to find its ready set.
local function held_member(id, v)
  if v and string.byte(v, 1) == 42 then return '*' .. id end
  return id
end
-- A key's rate window as a member of ':timers' (run ids never start with '~').
local function flow_timer_member(wf, key) return '~f:' .. #wf .. ':' .. wf .. key end

-- A spec text parsed: { climit, rlimit, period, fair, capped (rate limit or fairness), counted (what getStats
-- counts a held run under, see below) }. Parsed once per library load and text (a string.match and its
-- numbers cost Redis about 6,000 instructions, and a keyed completion needs the spec three to four times):
-- a pure function of its key, bounded, and rebuilt after a FUNCTION LOAD, as CLAIM_PLANS.
local SPECS, SPEC_COUNT, MAX_SPECS = {}, 0, 1024
local NO_SPEC = { climit = 0, rlimit = 0, period = 0, fair = false, capped = false }

-- What getStats counts a held run under: its spec's limit, fixed for the run's stay in the held set (the
-- reason a key's runs wait now, which changes with time, is the key's 'b', read by getRun). A fair key's
-- runs waiting their turn are not counted: they are queued as any run is.
local function held_reason(climit, rlimit)
  if climit > 0 then return 'concurrency' end
  if rlimit > 0 then return 'rateLimit' end
  return nil
end

local function flow_spec(q)
  if not q then return NO_SPEC end
  local spec = SPECS[q]
  if spec then return spec end
  local c, r, p, fair = string.match(q, '^(%d+),(%d+),(%d+),(%d)$')
  if not c then return NO_SPEC end
  spec = { climit = tonumber(c), rlimit = tonumber(r), period = tonumber(p), fair = fair == '1' }
  spec.capped = spec.fair or spec.rlimit > 0
  spec.counted = held_reason(spec.climit, spec.rlimit)
  if SPEC_COUNT >= MAX_SPECS then SPECS, SPEC_COUNT = {}, 0 end
  SPECS[q] = spec
  SPEC_COUNT = SPEC_COUNT + 1
  return spec
end

-- Why the key cannot take another run into the ready set now: 'concurrency', 'rateLimit' (and when its
-- window opens), 'turn' (a capped key's run is in the ready set already), or nil.
local function flow_block(root, wf, key, spec, n, p, now)
  if spec.climit > 0 and n >= spec.climit then return 'concurrency' end
  local rlimit = spec.rlimit
  if rlimit > 0 then
    local oldest = rcall('LINDEX', flow_log_key(root, wf, key), rlimit - 1)
    if oldest and tonumber(oldest) > now - spec.period then return 'rateLimit', tonumber(oldest) + spec.period end
  end
  if spec.capped and p > 0 then return 'turn' end
  return nil
end

-- Moves the key's held runs to the ready set while it has room, records why the rest wait, wakes the key
-- when its rate window opens, and deletes the key's state when it has no runs. `s`: the key's state as
-- read (HMGET n, p, q, b), with n and p already changed by the caller; `stored_n`, `stored_p`: as read, so
-- that a release that admits the next run (n back where it was) writes nothing to the key.
-- O(runs admitted); a key whose held set is empty costs no command for it (a run is held only while its
-- key is blocked, so a key with room has none).
local function flow_settle(root, wf, key, now, n, p, q, old_reason, stored_n, stored_p)
  local held_key = flow_held_key(root, wf, key)
  local spec = flow_spec(q)
  local capped, fair = spec.capped, spec.fair
  local reason, opens
  local admitted = 0
  -- the held set was found empty (a pop that got nothing): it does not exist, no need to ask below
  local none_held = false
  for _ = 1, FLOW_ADMIT_PER_CALL do
    reason, opens = flow_block(root, wf, key, spec, n, p, now)
    if reason then break end
    local head = rcall('ZPOPMIN', held_key)
    if not head[1] then
      none_held = true
      break
    end
    local id, score = head[1], head[2]
    -- an unpinned run's ready set is its workflow's: no read of its 'v' (see held_member)
    local ready
    if string.byte(id, 1) == 42 then
      id = string.sub(id, 2)
      ready = run_ready_key(root, id, wf)
    else
      ready = versioned_ready_key(root, wf, false)
    end
    if fair then
      -- to the back of the ready set at its priority: round-robin between keys
      score = tonumber(score)
      score = ms(score - score % PRIORITY_SPAN + (now - READY_EPOCH))
    end
    n = n + 1
    -- an uncapped key's run keeps 'fs' = 'h' (one command less per admission): out of the held set, it
    -- holds a slot (see slot_of)
    if capped then
      p = p + 1
      rcall('HSET', run_key(root, id), 'fs', 'p')
    end
    admitted = admitted + 1
    -- the held score as Redis wrote it (an exact text of the double) unless changed: no conversions
    rcall('ZADD', ready, score, id)
    notify_if_was_empty(root, ready, 1)
  end
  -- numbers given to Redis are printed with snprintf('%.17g'), about 2,000 instructions each: texts where common
  if admitted > 0 and spec.counted then rcall('HINCRBY', held_counts_key(root, wf), spec.counted, admitted == 1 and '-1' or ms(-admitted)) end
  if reason == 'turn' then reason = '' end
  reason = reason or ''
  if n <= 0 and p <= 0 and (none_held or rcall('EXISTS', held_key) == 0) then
    rcall('DEL', flow_key(root, wf, key))
    return
  end
  local changed = n ~= stored_n or p ~= stored_p
  if changed and reason ~= (old_reason or '') then
    rcall('HSET', flow_key(root, wf, key), 'n', ms(n), 'p', ms(p), 'b', reason)
  elseif changed then
    rcall('HSET', flow_key(root, wf, key), 'n', ms(n), 'p', ms(p))
  elseif reason ~= (old_reason or '') then
    rcall('HSET', flow_key(root, wf, key), 'b', reason)
  end
  if reason == 'rateLimit' and opens then schedule_timer(root, flow_timer_member(wf, key), opens) end
end

-- The key's state: n, p (numbers), q, b.
local function flow_state(root, wf, key)
  local s = rcall('HMGET', flow_key(root, wf, key), 'n', 'p', 'q', 'b')
  return tonumber(s[1]) or 0, tonumber(s[2]) or 0, s[3], s[4]
end

-- A run of a flow key becomes queued (emitted, woken, retried): to the ready set at once when its key has
-- room (then no run of the key is held, so none is passed), else into the key's held set.
-- `q`: the spec, stored on the key (the newest emit's wins: a changed option applies from then on).
-- `fresh`: a new run (wf1_emit), whose flow fields are written here with its slot. `v`: the run's 'v' when
-- the caller has it (false: none), nil to read it (a pinned run has its own ready set, see make_ready).
flow_enqueue = function(root, id, wf, key, q, priority, at, now, fresh, v)
  local run = run_key(root, id)
  local n, p, old_q, old_reason = flow_state(root, wf, key)
  local state_key = flow_key(root, wf, key)
  local spec = flow_spec(q)
  local reason, opens = flow_block(root, wf, key, spec, n, p, now)
  if not reason then
    local capped = spec.capped
    if fresh then
      rcall('HSET', run, 'fk', key, 'fq', q, 'fs', capped and 'p' or '1')
    else
      rcall('HSET', run, 'fs', capped and 'p' or '1')
    end
    if capped then
      rcall('HSET', state_key, 'n', ms(n + 1), 'p', ms(p + 1), 'q', q)
    elseif old_q ~= q then
      rcall('HSET', state_key, 'n', ms(n + 1), 'q', q)
    else
      rcall('HINCRBY', state_key, 'n', '1')
    end
    make_ready(root, id, wf, priority, at, v)
    return
  end
  if v == nil then v = rcall('HGET', run, 'v') or false end
  rcall('ZADD', flow_held_key(root, wf, key), ms(ready_score(priority, at)), held_member(id, v))
  if fresh then
    rcall('HSET', run, 'fk', key, 'fq', q, 'fs', 'h')
  else
    rcall('HSET', run, 'fs', 'h')
  end
  if spec.counted then rcall('HINCRBY', held_counts_key(root, wf), spec.counted, '1') end
  if reason == 'turn' then reason = '' end
  if old_q ~= q or reason ~= (old_reason or '') then rcall('HSET', state_key, 'q', q, 'b', reason) end
  if reason == 'rateLimit' then schedule_timer(root, flow_timer_member(wf, key), opens) end
end

-- What a run's 'fs' means: 'h' is a held run, or an uncapped key's run admitted since (flow_settle does not
-- rewrite it), which holds a slot; its key's held set tells them apart. Returns 'h' (held), '1' (holds a
-- slot), 'p' (holds a slot and is its capped key's run in the ready set) or nil (no slot). `remove`: take a
-- held run out of its key's held set (then the answer costs nothing more); else only look.
local function slot_of(root, id, wf, key, fs, v, remove)
  if fs ~= 'h' then return fs end
  local held_key, member = flow_held_key(root, wf, key), held_member(id, v)
  if remove then
    if rcall('ZREM', held_key, member) == 1 then return 'h' end
  elseif rcall('ZSCORE', held_key, member) then
    return 'h'
  end
  return '1'
end

-- make_ready for a run that may have a flow key: one that holds its slot already (taken back from a
-- worker, released) goes straight back, one held stays in its key's held set, one without goes through
-- flow_enqueue.
ready_run = function(root, id, wf, priority, at)
  local f = rcall('HMGET', run_key(root, id), 'fk', 'fs', 'fq', 'v')
  local v = f[4] or false
  if not f[1] then return make_ready(root, id, wf, priority, at, v) end
  local slot = slot_of(root, id, wf, f[1], f[2], v, false)
  if slot == '1' or slot == 'p' then return make_ready(root, id, wf, priority, at, v) end
  if slot == 'h' then return end
  flow_enqueue(root, id, wf, f[1], f[3], priority, at, at, nil, v)
end

-- A run leaves its slot (finished, parked, canceled): the key's next run may take it, in this call.
-- `final`: the run has ended (finish_run), and keeps its stale 'fs' (one command less per completion):
-- nothing reads it on a final run but wf1_retry, which deletes it. `keep_slot`: a run canceled at once
-- whose @OnFailure is still to run ('fin' = 'hook', lua/cancel.lua) keeps its slot, or its place in its
-- key's held set, for that hook: given back when the hook has run (wf1_fail 'hook-done'), when the run is
-- retried, or at the run's retention (lua/tick.lua). `executing`: the run was executing (claimed, so out
-- of any held set, holding a slot if it has 'fs'): its 'fs' needs no look at the held set (see slot_of).
flow_release = function(root, id, wf, now, final, executing, keep_slot)
  local run = run_key(root, id)
  -- every completion reads these: each field HMGET looks for costs Redis about 4,000 instructions
  local f = rcall('HMGET', run, 'fk', 'fs', 'dk', 'ql')
  -- only a run claimed under a queue limit ('ql', see claim_run) may free room a claim was cut short of
  if f[4] and rcall('DEL', root .. ':qw') == 1 then notify_workers(root, 'r') end
  if f[3] then debounce_close(root, wf, id, f[3]) end
  local key, slot = f[1], f[2]
  if not slot or not key or keep_slot then return end
  if not final then rcall('HDEL', run, 'fs') end
  -- the run's own spec, for a run that may be held (its count) or whose key has no state (damaged)
  local run_q
  if executing then
    if slot == 'h' then slot = '1' end
  else
    local g = rcall('HMGET', run, 'fq', 'v')
    run_q = g[1]
    slot = slot_of(root, id, wf, key, slot, g[2] or false, true)
  end
  local n, p, q, reason = flow_state(root, wf, key)
  q = q or run_q or rcall('HGET', run, 'fq')
  if slot == 'h' then
    local counted = flow_spec(run_q).counted
    if counted then rcall('HINCRBY', held_counts_key(root, wf), counted, '-1') end
    flow_settle(root, wf, key, now, n, p, q, reason, n, p)
  else
    flow_settle(root, wf, key, now, n - 1, slot == 'p' and p - 1 or p, q, reason, n, p)
  end
end

-- A run of a capped key was claimed (claim_runs, for the workflows a worker marks as flow-controlled):
-- its start goes into the key's sliding log, and the key may admit its next run.
flow_claimed = function(root, id, wf, now)
  local run = run_key(root, id)
  local f = rcall('HMGET', run, 'fk', 'fs', 'fq', 'st', 'fin')
  -- a final run holds a slot only for its @OnFailure (see flow_release)
  if not f[1] or (FINAL[f[4]] and f[5] ~= 'hook') then return end
  local spec = flow_spec(f[3])
  if not spec.capped then return end
  local key = f[1]
  local rlimit = spec.rlimit
  if rlimit > 0 then
    local log_key = flow_log_key(root, wf, key)
    rcall('LPUSH', log_key, ms(now))
    rcall('LTRIM', log_key, 0, rlimit - 1)
    rcall('PEXPIRE', log_key, spec.period)
  end
  local n, p, q, reason = flow_state(root, wf, key)
  local stored_p = p
  if f[2] == 'p' then
    rcall('HSET', run, 'fs', '1')
    p = p - 1
  end
  flow_settle(root, wf, key, now, n, p, q or f[3], reason, n, stored_p)
end

-- A key's rate window opened (its ':timers' member came due): admit what the key has room for.
-- Returns true when `member` was a key's, false for a run id.
flow_timer_due = function(root, member, now)
  local length, from = string.match(member, '^~f:(%d+):()')
  if not length then return false end
  local wf = string.sub(member, from, from + tonumber(length) - 1)
  local key = string.sub(member, from + tonumber(length))
  local n, p, q, reason = flow_state(root, wf, key)
  if q then flow_settle(root, wf, key, now, n, p, q, reason, n, p) end
  return true
end

-- How many more runs a claim may take in a shard whose queue has a concurrency limit (queues.<name>.concurrency;
-- such a queue has one partition): the shard's lease set holds every run executing in it. A claim cut
-- short by it leaves ':qw' behind, so that the next run to leave the lease set tells workers (flow_release):
-- their ready sets were not empty, so no other notice would come.
queue_room = function(root, limit, want)
  local room = math.max(0, limit - rcall('ZCOUNT', root .. ':leases', '-inf', '(+inf'))
  if room < want then rcall('SET', root .. ':qw', '1') end
  return room
end

-- Debounce (the workflow option debounce): a key's emits within its period collapse into one run, the
-- key's pending run, which is 'scheduled' for the end of the period and carries the latest input.
--   <root>:db:<wf>:<key>  the key's pending run id (string), deleted when the run comes due or ends
-- Run hash: 'dk' the debounce key and 'df' the time of the burst's first emit, while the run is pending.
local function debounce_slot(root, wf, key) return root .. ':db:' .. wf .. ':' .. key end

-- Folds an emit into the key's pending run, if it has one: its input becomes `input` and its start moves
-- to now + period, but not past maxWait after the first emit. Returns the pending run's id, or nil.
debounce_into_pending = function(root, wf, key, input, period, max_wait, now)
  local pending = rcall('GET', debounce_slot(root, wf, key))
  if not pending then return nil end
  local run = run_key(root, pending)
  local p = rcall('HMGET', run, 'st', 'df')
  if p[1] ~= 'scheduled' or not p[2] then return nil end
  local due = now + period
  if max_wait then due = math.min(due, tonumber(p[2]) + max_wait) end
  rcall('HSET', run, 'in', input, 'due', ms(due))
  rcall('HINCRBY', run, 'dn', 1)
  schedule_timer(root, pending, due)
  return pending
end

debounce_open = function(root, wf, key, id, now)
  rcall('SET', debounce_slot(root, wf, key), id)
  rcall('HSET', run_key(root, id), 'dk', key, 'df', ms(now))
  rcall('HINCRBY', held_counts_key(root, wf), 'debounce', 1)
end

-- The pending run comes due or ends (canceled): later emits start a new run.
debounce_close = function(root, wf, id, key)
  local slot = debounce_slot(root, wf, key)
  if rcall('GET', slot) == id then
    rcall('DEL', slot)
    rcall('HINCRBY', held_counts_key(root, wf), 'debounce', -1)
  end
  rcall('HDEL', run_key(root, id), 'dk', 'df')
end

end
