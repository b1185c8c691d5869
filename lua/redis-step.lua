-- wf1_commit_redis_step: a Redis step (ctx.step.redis): runs the step's commands and stores its record in
-- one call, under the run's lease, so that the commands take effect exactly once: a repeated call finds
-- the record and runs nothing, a stale worker is refused, a crash before the call leaves nothing done.
-- KEYS[1]     shard root; KEYS[2..]  the keys the commands name, each once (declared for Cluster)
-- ARGV[1]  run id    ARGV[2] fencing token    ARGV[3] step field ('<occurrence>:<name>')
-- ARGV[4]  'commit': the record's JSON without its closing brace (the replies are added as its "r");
--          'compensate': the compensated record, stored as it is
-- ARGV[5]  the record (JSON text, opaque) stored as failed when a guard does not hold
-- ARGV[6]  'commit' (the step's own commands) or 'compensate' (its compensation's: the step must have
--          succeeded; its record becomes compensated, 'C', in the same call)
-- ARGV[7]  number of guards G, then G times: key index (into KEYS, from 2), 'v' and a value (GET must
--          equal it) or 'n' and '' (the key must not exist)
-- then     number of commands C, then C times: name, key index, the command's arguments (REDIS_STEP_COMMANDS
--          gives how many)
-- Reply: { 1, server ms, replies JSON } done; { 2, stored record } the step has a record already (nothing
--        run); { 3, server ms } a guard did not hold (the failure record is stored, nothing run);
--        { 0, reason } the caller no longer holds the run.
-- Everything is checked before the first write (names, arity, key types, integers), with the types the
-- earlier commands of the same step leave, so that no command can fail halfway.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do

-- name = { arguments after the key, type the key must have ('any': none), what a write leaves the key as,
--          which arguments must be integers, whether the key's value (or field, argument 1) must hold an integer }
local REDIS_STEP_COMMANDS = {
  get = { 0, 'string' }, exists = { 0, 'any' }, strlen = { 0, 'string' }, ttl = { 0, 'any' }, pttl = { 0, 'any' },
  set = { 1, 'any', 'string' }, del = { 0, 'any', 'none' },
  incr = { 0, 'string', 'string', nil, true }, decr = { 0, 'string', 'string', nil, true },
  incrby = { 1, 'string', 'string', 1, true }, decrby = { 1, 'string', 'string', 1, true },
  expire = { 1, 'any', nil, 1 }, pexpire = { 1, 'any', nil, 1 }, persist = { 0, 'any' },
  hget = { 1, 'hash' }, hexists = { 1, 'hash' }, hlen = { 0, 'hash' },
  hset = { 2, 'hash', 'hash' }, hdel = { 1, 'hash', 'hash' }, hincrby = { 2, 'hash', 'hash', 2, true },
  sismember = { 1, 'set' }, scard = { 0, 'set' }, sadd = { 1, 'set', 'set' }, srem = { 1, 'set', 'set' },
  zscore = { 1, 'zset' }, zcard = { 0, 'zset' }, zadd = { 2, 'zset', 'zset', 'score' }, zrem = { 1, 'zset', 'zset' },
  zincrby = { 2, 'zset', 'zset', 'score' },
  llen = { 0, 'list' }, lpush = { 1, 'list', 'list' }, rpush = { 1, 'list', 'list' },
}
-- Most commands and guards one Redis step may carry (lib/execution/redis-tx.ts checks it first).
local REDIS_STEP_MAX_COMMANDS = 64

local function is_integer_text(text)
  return text ~= nil and string.match(text, '^%-?%d+$') ~= nil and #text <= 18
end

-- A reply as JSON: numbers as integers (Redis replies with integers), strings escaped, nil as null.
local function reply_json(reply)
  local kind = type(reply)
  if kind == 'number' then return string.format('%d', reply) end
  if kind == 'string' then return cjson.encode(reply) end
  if kind == 'table' and reply.ok then return cjson.encode(reply.ok) end
  return 'null'
end

local function commit_redis_step(keys, argv)
  local root = keys[1]
  local id, token, field = argv[1], argv[2], argv[3]
  local now = now_ms()
  local held, reason = holds_lease(run_key(root, id), token, now)
  if not held then return { 0, reason } end
  local current = rcall('HGET', steps_key(root, id), field)
  local compensating = argv[6] == 'compensate'
  if compensating then
    if not current then return redis.error_reply('ERR redis step: no record to compensate') end
    if record_state(current) ~= 'S' then return { 2, current } end
  elseif current and record_state(current) ~= 'W' then
    return { 2, current }
  end

  -- read the plan and check all of it before any write
  local at = 7
  local guard_count = tonumber(argv[at])
  if not guard_count or guard_count > REDIS_STEP_MAX_COMMANDS then return redis.error_reply('ERR redis step: bad guard count') end
  local guards = {}
  for g = 1, guard_count do
    local index = tonumber(argv[at + 1])
    if not index or not keys[index] or index < 2 then return redis.error_reply('ERR redis step: guard names an undeclared key') end
    guards[g] = { keys[index], argv[at + 2], argv[at + 3] }
    at = at + 3
  end
  at = at + 1
  local command_count = tonumber(argv[at])
  if not command_count or command_count < 1 or command_count + guard_count > REDIS_STEP_MAX_COMMANDS then
    return redis.error_reply('ERR redis step: needs 1 to ' .. REDIS_STEP_MAX_COMMANDS .. ' commands and guards')
  end
  local plan = {}
  local types = {}
  for c = 1, command_count do
    local name = argv[at + 1]
    local spec = REDIS_STEP_COMMANDS[name]
    if not spec then return redis.error_reply('ERR redis step: command ' .. tostring(name) .. ' is not allowed') end
    local index = tonumber(argv[at + 2])
    local key = index and index >= 2 and keys[index]
    if not key then return redis.error_reply('ERR redis step: command ' .. name .. ' names an undeclared key') end
    local a1, a2 = argv[at + 3], argv[at + 4]
    if (spec[1] >= 1 and a1 == nil) or (spec[1] == 2 and a2 == nil) then return redis.error_reply('ERR redis step: command ' .. name .. ' lacks arguments') end
    at = at + 2 + spec[1]
    -- the key's type when this command runs: as stored, or as an earlier command of this step left it
    local kind = types[key]
    if kind == nil then
      kind = rcall('TYPE', key).ok
      types[key] = kind
    end
    if spec[2] ~= 'any' and kind ~= 'none' and kind ~= spec[2] then
      return redis.error_reply('WRONGTYPE redis step: ' .. name .. ' needs a ' .. spec[2] .. ' but the key holds a ' .. kind)
    end
    local integer_arg = spec[4]
    if integer_arg == 1 and not is_integer_text(a1) then return redis.error_reply('ERR redis step: ' .. name .. ' needs an integer') end
    if integer_arg == 2 and not is_integer_text(a2) then return redis.error_reply('ERR redis step: ' .. name .. ' needs an integer') end
    local score = integer_arg == 'score' and tonumber(a1)
    if integer_arg == 'score' and (not score or score ~= score) then return redis.error_reply('ERR redis step: ' .. name .. ' needs a numeric score') end
    if spec[5] and kind ~= 'none' then
      local value
      if spec[2] == 'hash' then value = rcall('HGET', key, a1) else value = rcall('GET', key) end
      if value and not is_integer_text(value) then
        return redis.error_reply('ERR redis step: ' .. name .. ' on a value that is not an integer')
      end
    end
    if spec[3] then types[key] = spec[3] end
    plan[c] = { name, key, spec[1], a1, a2 }
  end
  if at ~= #argv then return redis.error_reply('ERR redis step: malformed command list') end

  for g = 1, guard_count do
    local guard = guards[g]
    local value = rcall('GET', guard[1])
    local holds
    if guard[2] == 'n' then holds = value == false else holds = value == guard[3] end
    if not holds then
      store_record(root, id, field, ms(now), 'F', argv[5])
      return { 3, now }
    end
  end

  local replies = {}
  local state, record = 'S', nil
  for c = 1, command_count do
    local step = plan[c]
    local reply
    if step[3] == 0 then reply = rcall(step[1], step[2])
    elseif step[3] == 1 then reply = rcall(step[1], step[2], step[4])
    else reply = rcall(step[1], step[2], step[4], step[5]) end
    replies[c] = reply_json(reply)
  end
  local replies_json = '[' .. table.concat(replies, ',') .. ']'
  if compensating then state, record = 'C', argv[4] else record = argv[4] .. ',"r":' .. replies_json .. '}' end
  store_record(root, id, field, ms(now), state, record)
  return { 1, now, replies_json }
end

redis.register_function('wf1_commit_redis_step', commit_redis_step)
end
