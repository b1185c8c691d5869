-- wf1_park: the run waits for sleeps, child runs and events. Its lease is released and no worker holds
-- it until a timer, a child or an event wakes it. Waits that were resolved before the run got here (a
-- child that finished first, an event delivered while the run was on its way) are taken into account:
-- if the wait is already over, the run goes straight back to its ready set instead of waiting.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token
-- ARGV[3]  what the run waits for (JSON text, shown as RunInfo.waitingFor)
-- ARGV[4..] groups, one per wait: kind, step field, spec (3 arguments; 5 for 'ev')
--          'sleep', field, 'in:<ms>' | 'at:<ms>'           a sleep; its record stores the wake-up time
--          'child', field, '<child id>|<timeout ms or empty>|<workflow>'
--          'join', field, spec as for 'child': a run that another parent started (the idempotency key of the
--                  run's child named it); waited for, but not this run's child (a cancel leaves it alone)
--          'ev', field, event name, key ('' = none), timeout ms ('' = none): an event. The name and key
--          are the user's own strings, so they come as arguments of their own: nothing here decodes them.
--          'spawn', field, spec as for 'child', then the 12 arguments of wf1_emit for that child: a child
--          in this shard that the run starts as it parks (created first, as wf1_emit would; an existing
--          run id creates nothing), then waited for as 'child'.
--          A wait without a record gets a waiting record ('W'); an existing record is left as it is.
-- Reply: { 1, wake-up ms or -1 } parked; { 2 } the wait was already over and the run is queued again;
--        { 0, reason } the caller no longer holds the run.
local function park(keys, argv)
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
  local steps = steps_key(root, id)
  -- The waits are read first, so that the children the run starts are created together (emit_children)
  -- and all step records are read, written and listed in one call each.
  -- `waits`: where each wait's kind, field and spec are in argv (read in place, no table per wait)
  local waits, spawned, fields = {}, {}, {}
  local i = 4
  while i <= #argv do
    local kind = argv[i]
    waits[#waits + 1] = i
    fields[#fields + 1] = argv[i + 1]
    i = i + 3
    if kind == 'spawn' then
      spawned[#spawned + 1] = i
      i = i + 12
    elseif kind == 'ev' then
      i = i + 2
    elseif kind ~= 'sleep' and kind ~= 'child' and kind ~= 'join' then
      -- before any write: 'event' is the JSON wait spec of clients older than BUILD 46
      return redis.error_reply('ERR wf1_park: unknown wait kind ' .. tostring(kind) .. ' (a client older than this library? restart it with the current package)')
    end
  end
  if #spawned > 0 then emit_children(keys, argv, spawned, now) end
  local currents = #fields > 0 and rcall('HMGET', steps, unpack(fields)) or {}

  local due, now_text = nil, nil
  local wake = false
  local children, children_open = 0, 0
  local open_fields, new_records, new_children, written = {}, {}, {}, {}
  for w, at in ipairs(waits) do
    local kind, field, spec = argv[at], argv[at + 1], argv[at + 2]
    local own = kind ~= 'join'
    if kind == 'spawn' or kind == 'join' then kind = 'child' end
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
      elseif kind == 'child' then
        local child_id, timeout, wf = string.match(spec, '^([^|]*)|([^|]*)|(.*)$')
        json = '{"k":"child","f":' .. cjson.encode('child:' .. wf) .. ',"s":"waiting","id":' .. cjson.encode(child_id)
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
    if kind == 'child' then children = children + 1 end
    if state == 'W' then
      if kind == 'child' then children_open = children_open + 1 end
      if kind ~= 'sleep' then open_fields[#open_fields + 1] = field end
      if deadline and (not due or deadline < due) then due = deadline end
    elseif kind ~= 'child' or state == 'F' then
      wake = true
    end
  end
  if #new_records > 0 then rcall('HSET', steps, unpack(new_records)) end
  if #new_children > 0 then rcall('SADD', children_key(root, id), unpack(new_children)) end
  if children > 0 and children_open == 0 then wake = true end
  if due and due <= now then wake = true end

  rcall('ZREM', root .. ':leases', id)
  -- the fields the implied history entries are built from; a run that parks has not finished ('fa')
  local known = { f[7], f[8], f[9], false }
  if wake then
    rcall('HSET', run, 'st', 'queued')
    count_move(root, f[4], id, f[2], 'queued')
    make_ready(root, id, f[4], f[5], now)
    history(root, id, now, 'resumed', { reason = 'wait already over' }, nil, f[6] or false, known)
    return { 2 }
  end
  -- Every way out of 'waiting' deletes the awaited set, so there is none to clear here.
  if #open_fields > 0 then rcall('SADD', awaited_key(root, id), unpack(open_fields)) end
  -- 'ws': the run waits for children only, without a timer (a fan-in): see wake_run.
  if not due and #open_fields == children_open then
    rcall('HSET', run, 'st', 'waiting', 'wait', argv[3], 'wn', ms(children_open), 'ws', '1')
  else
    rcall('HSET', run, 'st', 'waiting', 'wait', argv[3], 'wn', ms(children_open))
  end
  count_move(root, f[4], id, f[2], 'waiting')
  if due then schedule_timer(root, id, due) end
  history(root, id, now, 'parked', { waitingFor = argv[3], wakeAt = due }, nil, f[6] or false, known)
  return { 1, due or -1 }
end

redis.register_function('wf1_park', park)
