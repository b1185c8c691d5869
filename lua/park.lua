-- wf1_park: the run waits for sleeps, child runs and events. Its lease is released and no worker holds
-- it until a timer, a child or an event wakes it. Waits that were resolved before the run got here (a
-- child that finished first, an event delivered while the run was on its way) are taken into account:
-- if the wait is already over, the run goes straight back to its ready set instead of waiting.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token
-- ARGV[3]  what the run waits for (JSON text, shown as RunInfo.waitingFor)
-- ARGV[4..] groups, one per wait: kind, step field, spec (3 arguments; 5 for 'ev')
--          'sleep', field, 'in:<ms>' | 'at:<ms>'           a sleep; its record stores the wake-up time
--          'child', field, '<child id>|<timeout ms or empty>|<workflow>'; the timeout may start with 'c'
--                  (onFailure 'continue'): the child's failure is an outcome like its success, so it wakes the
--                  run only as the last of its children (the waiting record carries '"oc":1' for deliver_to_run)
--                  After the 'c', an 'i' (inheritDeadline): a child this call spawns gets its parent's deadline
--                  ('dl') as its own when that is earlier than its timeout. A spawned child with a timeout or an 'i'
--                  gets a deadline ('dl', the ':deadlines' set) and fails with TimeoutError past it.
--          'any', field, spec as for 'child': a run the handler races (waitForAny) with other waits: any
--                  outcome of it wakes the run (the waiting record carries '"any":1'); not counted as a child
--          'join', field, spec as for 'child': a run that another parent started (the idempotency key of the
--                  run's child named it); waited for, but not this run's child (a cancel leaves it alone)
--          'ev', field, event name, key ('' = none), timeout ms ('' = none): an event. The name and key
--          are the user's own strings, so they come as arguments of their own: nothing here decodes them.
--          'spawn', field, spec as for 'child', then the 12 arguments of wf1_emit for that child: a child
--          in this shard that the run starts as it parks (created first, as wf1_emit would; an existing
--          run id creates nothing), then waited for as 'child'.
--          'graph', field, graph id: a graph of child runs written by wf1_graph_stage; the park starts it (its
--                  roots are created; see includes/05-graph.lua) and the graph's end wakes the run.
--          A wait without a record gets a waiting record ('W'); an existing record is left as it is.
--          ARGV[4..6] may instead be 'staged', '', '': the run's earlier waits were written by wf1_park_stage
--          under this token, and this call adds the last ones (ARGV[7..]) and parks on all of them.
--          A group 'warm', window ms, worker id (build 52 on, wf1_park only, not with 'staged'): the worker
--          keeps the execution in memory; the run is marked warm for it (see delta_key in 01-common.lua).
-- At most MAX_WAITS_PER_CALL waits per call: more are refused before any write (see wf1_park_stage).
-- Reply: { 1, wake-up ms or -1 } parked; { 2 } the wait was already over and the run is queued again;
--        { 0, reason } the caller no longer holds the run.
--
-- wf1_park_stage: writes some of a large park's waits ahead of the park (a Promise.all over thousands of
-- children or events), in calls of a few waits each (32: PARK_WAITS_PER_CALL in lib/redis/workflow-store.ts;
-- the client takes this path only past that many waits, so a small park is one call), so that no call does work
-- proportional to the fan-out (ARCHITECTURE.md section 7: the park that created 3,999 children took
-- about 120 ms in one call, and 4,000 failed on unpack's limit after creating them).
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3..] waits, as wf1_park's ARGV[4..]
-- Reply: { 1 } staged (or the run has parked already under this token: a repeated call), { 0, reason }.
-- Why the executor creates the children in chunks itself rather than recording them for housekeeping to
-- create: each chunk is then a complete wf1_park of its waits minus the status change (children created
-- with their indexes and ready entries, waiting records written, open waits added to the awaited set), so
-- there is no second kind of pending work to sweep, the children start as soon as their chunk lands, and a
-- small park (a fan-out of 3, the benchmark's) is the one call it always was. Every chunk is safe to
-- repeat: child ids are derived from the parent's id and step (a repeat creates nothing), a record that
-- exists is left as it is, and the open-children count ('wn') grows only by the waits SADD adds. The
-- staged waits belong to the token in 'sg': the first chunk under a new token (a takeover after a crash
-- between chunks) clears what an earlier attempt staged, and the replay stages every wait again; the
-- final wf1_park refuses to park on waits staged under another token. While waits are staged the run is
-- still running: a child's outcome or an event delivered meanwhile takes its field out of the awaited set
-- (deliver_to_run) and counts down 'wn' or marks the park as already over ('sk'). Staging fields on the run:
-- 'sg' token, 'wn' open children, 'sk' a wait is already over, 'sc' a child is waited for, 'se' a wait other
-- than a child is open, 'sd' the earliest due time.
local MAX_WAITS_PER_CALL = 1000

-- The timeout part of a child wait's spec, '[c][i]<ms or empty>' (see the header): the ms text, and whether
-- the wait settles (onFailure 'continue') and whether the child inherits its parent's deadline.
local function child_timeout(text)
  local settles = string.sub(text, 1, 1) == 'c'
  if settles then text = string.sub(text, 2) end
  local inherits = string.sub(text, 1, 1) == 'i'
  if inherits then text = string.sub(text, 2) end
  return text, settles, inherits
end

-- Gives the children a park spawned their deadlines (runWorkflow's timeoutMs, inheritDeadline): set once,
-- when a child is created, so that a repeated park moves no deadline. `parent_deadline`: read when needed.
local function spawned_deadlines(root, run, argv, spawned, now)
  local parent_deadline
  for _, o in ipairs(spawned) do
    -- o: where the child's wf1_emit arguments start; its wait's spec is 3 before
    local child_id, timeout_text = string.match(argv[o - 1], '^([^|]*)|([^|]*)|')
    local timeout, _, inherits = child_timeout(timeout_text or '')
    local deadline = timeout ~= '' and now + tonumber(timeout) or nil
    if inherits then
      if parent_deadline == nil then parent_deadline = tonumber(rcall('HGET', run, 'dl')) or false end
      if parent_deadline and (not deadline or parent_deadline < deadline) then deadline = parent_deadline end
    end
    if deadline then
      local child = run_key(root, child_id)
      local c = rcall('HMGET', child, 'st', 'dl')
      if c[1] and not FINAL[c[1]] and not c[2] then
        rcall('HSET', child, 'dl', ms(deadline))
        rcall('ZADD', root .. ':deadlines', ms(deadline), child_id)
      end
    end
  end
end
local STAGED_FIELDS = { 'sk', 'sc', 'se', 'sd' }

local function park(keys, argv, staging)
  local root = keys[1]
  local id, token = argv[1], argv[2]
  local run = run_key(root, id)
  local now = now_ms()
  -- What a park uses: its status, workflow and priority (f[2], f[4], f[5]), its implied history entries
  -- ('hn', f[6]) and the fields they are built from ('ca', 'sa', 'wk', f[7..9]; see implied_history).
  local f, reason = read_under_lease(run, token, now, 'wf', 'pri', 'hn', 'ca', 'sa', 'wk')
  if reason then
    -- this exact call applied already: the run parked or went back to its ready set under this token
    if f[1] == token and (f[2] == 'waiting' or f[2] == 'queued') then return { f[2] == 'waiting' and 1 or 2, -1 } end
    return { 0, reason }
  end
  local staged = not staging and argv[4] == 'staged'
  local i = staging and 3 or (staged and 7 or 4)
  local steps = steps_key(root, id)
  -- The waits are read first, so that the children the run starts are created together (emit_children)
  -- and all step records are read, written and listed in one call each.
  -- `waits`: where each wait's kind, field and spec are in argv (read in place, no table per wait)
  local waits, spawned, fields = {}, {}, {}
  local warm = nil
  while i <= #argv do
    local kind = argv[i]
    if kind == 'warm' then
      -- not a wait: '<fence>|<window>|<worker>', the fence being the token's (a staged park stays cold)
      if not staging and not staged then warm = string.match(token, '^(%d+):') .. '|' .. ms(tonumber(argv[i + 1]) or 0) .. '|' .. argv[i + 2] end
    else
      waits[#waits + 1] = i
      fields[#fields + 1] = argv[i + 1]
    end
    i = i + 3
    if kind == 'warm' then
      -- read above
    elseif kind == 'spawn' then
      spawned[#spawned + 1] = i
      i = i + 12
    elseif kind == 'ev' then
      i = i + 2
    elseif kind == 'graph' then
      if rcall('HEXISTS', graph_key(root, argv[i - 1]), 'N') == 0 then
        return redis.error_reply('ERR wf1_park: graph ' .. tostring(argv[i - 1]) .. ' was not written (wf1_graph_stage first)')
      end
    elseif kind ~= 'sleep' and kind ~= 'child' and kind ~= 'join' and kind ~= 'any' then
      -- before any write: 'event' is the JSON wait spec of clients older than BUILD 46
      return redis.error_reply('ERR wf1_park: unknown wait kind ' .. tostring(kind) .. ' (a client older than this library? restart it with the current package)')
    end
  end
  if #waits > MAX_WAITS_PER_CALL then
    return redis.error_reply('ERR wf1_park: ' .. #waits .. ' waits in one call; send at most ' .. MAX_WAITS_PER_CALL .. ' per call (wf1_park_stage)')
  end
  -- the waits staged so far (see wf1_park_stage): 'sg', 'wn', then STAGED_FIELDS
  local s = (staging or staged) and rcall('HMGET', run, 'sg', 'wn', unpack(STAGED_FIELDS))
  if staged and s[1] ~= token then return { 0, 'STAGED_WAITS_LOST' } end
  if staging and s[1] ~= token then
    -- an earlier attempt's staged waits: this attempt's replay stages all of its own
    rcall('DEL', awaited_key(root, id))
    rcall('HDEL', run, 'wn', unpack(STAGED_FIELDS))
    rcall('HSET', run, 'sg', token)
    s = { token, false, false, false, false, false }
  end
  if #spawned > 0 then
    emit_children(keys, argv, spawned, now, rcall('HGET', run, 'v') or false)
    spawned_deadlines(keys[1], run, argv, spawned, now)
  end
  local currents = #fields > 0 and rcall('HMGET', steps, unpack(fields)) or {}

  local due, now_text = nil, nil
  local wake = false
  local children, children_open = 0, 0
  local open_fields, new_records, new_children, written = {}, {}, {}, {}
  -- the open child waits of a staging call, by field
  local open_children = staging and {}
  for w, at in ipairs(waits) do
    local kind, field, spec = argv[at], argv[at + 1], argv[at + 2]
    local own = kind ~= 'join' and kind ~= 'any'
    local raced = kind == 'any'
    if kind == 'spawn' or kind == 'join' or raced then kind = 'child' end
    -- onFailure 'continue' (see the header): a failed child counts as finished, as a succeeded one does
    local settles = false
    -- a field named twice takes the record its first wait wrote
    local current = currents[w] or written[field]
    local state = record_state(current)
    local deadline = nil
    if not current then
      local json
      if kind == 'sleep' then
        local amount = tonumber(string.sub(spec, 4))
        deadline = amount
        if string.sub(spec, 1, 3) == 'in:' then deadline = now + amount end
        json = '{"k":"sleep","s":"waiting","u":' .. ms(deadline) .. '}'
      elseif kind == 'graph' then
        json = '{"k":"graph","f":"graph","s":"waiting","gid":' .. cjson.encode(spec) .. '}'
        graph_start(root, spec, now)
      elseif kind == 'child' then
        local child_id, timeout, wf = string.match(spec, '^([^|]*)|([^|]*)|(.*)$')
        json = '{"k":"child","f":' .. cjson.encode('child:' .. wf) .. ',"s":"waiting","id":' .. cjson.encode(child_id)
        local settles_child
        timeout, settles_child = child_timeout(timeout)
        if settles_child then json = json .. ',"oc":1' end
        if raced then json = json .. ',"any":1' end
        if timeout ~= '' then
          deadline = now + tonumber(timeout)
          json = json .. ',"dl":' .. ms(deadline)
        end
        json = json .. '}'
        if own then new_children[#new_children + 1] = child_id end
      else
        json = '{"k":"event","s":"waiting","ev":' .. cjson.encode(spec) .. ',"key":' .. cjson.encode(argv[at + 3])
        local timeout = argv[at + 4]
        if timeout ~= '' then
          deadline = now + tonumber(timeout)
          json = json .. ',"dl":' .. ms(deadline)
        end
        json = json .. '}'
      end
      now_text = now_text or ms(now)
      written[field] = record_text(now_text, 'W', json)
      new_records[#new_records + 1] = field
      new_records[#new_records + 1] = written[field]
      state = 'W'
    elseif state == 'W' then
      deadline = tonumber(string.match(current, '"[ud]l?":(%d+)'))
    end
    if kind == 'child' and not raced then
      settles = string.sub(spec, string.find(spec, '|', 1, true) + 1, string.find(spec, '|', 1, true) + 1) == 'c'
    end
    -- (settles: the 'c' right after the child id, see child_timeout)
    -- a raced run is an open wait like an event's: any outcome of it wakes the run
    local counted = kind == 'child' and not raced
    if counted then children = children + 1 end
    if state == 'W' then
      if counted then children_open = children_open + 1 end
      if kind ~= 'sleep' then open_fields[#open_fields + 1] = field end
      if open_children and counted then open_children[field] = true end
      if deadline and (not due or deadline < due) then due = deadline end
    elseif not counted or (state == 'F' and not settles) then
      wake = true
    end
  end
  if #new_records > 0 then rcall('HSET', steps, unpack(new_records)) end
  if #new_children > 0 then rcall('SADD', children_key(root, id), unpack(new_children)) end
  if staging then
    -- Counted once per field whatever the repeats: SADD answers 0 for a field added before.
    local awaited, added = awaited_key(root, id), 0
    for _, field in ipairs(open_fields) do
      if rcall('SADD', awaited, field) == 1 and open_children[field] then added = added + 1 end
    end
    if added > 0 then rcall('HINCRBY', run, 'wn', ms(added)) end
    if wake and not s[3] then rcall('HSET', run, 'sk', '1') end
    if children > 0 and not s[4] then rcall('HSET', run, 'sc', '1') end
    if #open_fields > children_open and not s[5] then rcall('HSET', run, 'se', '1') end
    if due and not (s[6] and tonumber(s[6]) <= due) then rcall('HSET', run, 'sd', ms(due)) end
    return { 1 }
  end
  -- open waits other than children (events)
  local open_others = #open_fields - children_open
  if staged then
    if s[3] then wake = true end
    if s[4] then children = children + 1 end
    children_open = children_open + (tonumber(s[2]) or 0)
    if s[5] then open_others = open_others + 1 end
    local staged_due = tonumber(s[6])
    if staged_due and (not due or staged_due < due) then due = staged_due end
    rcall('HDEL', run, 'sg', unpack(STAGED_FIELDS))
  end
  if children > 0 and children_open == 0 then wake = true end
  if due and due <= now then wake = true end

  rcall('ZREM', root .. ':leases', id)
  if warm then
    -- the worker has seen every record but the ones of these waits (see delta_key)
    local dkey = delta_key(root, id)
    rcall('DEL', dkey)
    if #fields > 0 then rcall('SADD', dkey, unpack(fields)) end
    rcall('HSET', run, 'ww', warm)
  end
  -- the fields the implied history entries are built from; a run that parks has not finished ('fa')
  local known = { f[7], f[8], f[9], false }
  if wake then
    if staged then forget_wait(root, id, run) end
    rcall('HSET', run, 'st', 'queued')
    count_move(root, f[4], id, f[2], 'queued')
    if warm then make_ready_warm(root, id, f[5], now, warm) else make_ready(root, id, f[4], f[5], now) end
    history(root, id, now, 'resumed', { reason = 'wait already over' }, nil, f[6] or false, known)
    return { 2 }
  end
  -- Every way out of 'waiting' deletes the awaited set, so there is none to clear here.
  if #open_fields > 0 then rcall('SADD', awaited_key(root, id), unpack(open_fields)) end
  -- 'ws': the run waits for children only, without a timer (a fan-in): see wake_run.
  if not due and open_others == 0 then
    rcall('HSET', run, 'st', 'waiting', 'wait', argv[3], 'wn', ms(children_open), 'ws', '1')
  else
    rcall('HSET', run, 'st', 'waiting', 'wait', argv[3], 'wn', ms(children_open))
  end
  count_move(root, f[4], id, f[2], 'waiting')
  flow_release(root, id, f[4], now, false, true)
  if due then schedule_timer(root, id, due) end
  history(root, id, now, 'parked', { waitingFor = argv[3], wakeAt = due }, nil, f[6] or false, known)
  return { 1, due or -1 }
end

local function park_stage(keys, argv)
  return park(keys, argv, true)
end

redis.register_function('wf1_park', park)
redis.register_function('wf1_park_stage', park_stage)
