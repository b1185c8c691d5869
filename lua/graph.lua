-- wf1_graph_stage: writes part of a graph of child runs (ctx.step.graph) ahead of the park that starts it
-- (see includes/05-graph.lua for its keys). A graph of 10,000 nodes is written in calls of at most
-- MAX_GRAPH_NODES_PER_CALL nodes each (ARCHITECTURE.md section 7), as wf1_park_stage writes a large park's
-- waits; the park then starts it (its 'graph' wait). The client has validated the graph (names, cycles,
-- workflows, sizes) and numbered its nodes: the library decodes nothing a user wrote.
-- KEYS[1]  shard root (the parent's)
-- ARGV[1]  run id (the parent)    ARGV[2] fencing token    ARGV[3] graph id
-- ARGV[4]  the parent's step field    ARGV[5] policy: 'f' (fail) or 'c' (continue)    ARGV[6] how many nodes
-- ARGV[7]  the queue of the node runs (the parent's)    ARGV[8] the roots ('0,3,'; '' = written by another call)
-- ARGV[9..] nodes, 8 arguments each: index, name, workflow, input (JSON text), how many dependencies,
--          dependents ('4,9,'), dependencies ('0,1,'), run id
--          or, when ARGV[9] is 'F' (build 57 on, for a call with a node of a flow-controlled workflow),
--          ARGV[10..] nodes of 10 arguments each: those 8, then the node's flow key and flow spec ('' = none;
--          see includes/01-flow.lua: the client checked that the key lives in this shard)
-- Reply: { 1 } written (also when the graph has started already: a repeated call writes nothing), or
--        { 0, reason } when the caller no longer holds the run.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do
local MAX_GRAPH_NODES_PER_CALL = 256

local function graph_stage(keys, argv)
  local root = keys[1]
  local id, token, gid = argv[1], argv[2], argv[3]
  local first, stride = 9, 8
  if argv[9] == 'F' then first, stride = 10, 10 end
  local nodes = (#argv - first + 1) / stride
  if nodes < 0 or nodes ~= math.floor(nodes) or nodes > MAX_GRAPH_NODES_PER_CALL then
    return redis.error_reply('ERR wf1_graph_stage: send 0 to ' .. MAX_GRAPH_NODES_PER_CALL .. ' nodes of 8 arguments each after the 8 first arguments (of 10 each after \'F\')')
  end
  local ok, reason = holds_lease(run_key(root, id), token, now_ms())
  if not ok then return { 0, reason } end
  local g = graph_key(root, gid)
  -- started: its counters move, and writing the graph again would reset them
  if rcall('HEXISTS', g, 'A') == 1 then return { 1 } end
  local fields = { 'par', id, 'pf', argv[4], 'P', argv[5], 'N', argv[6], 'L', argv[6], 'q', argv[7] }
  if argv[8] ~= '' then
    fields[13] = 'roots'
    fields[14] = argv[8]
  end
  local n = #fields
  for a = first, #argv, stride do
    local i = argv[a]
    fields[n + 1] = 'n' .. i; fields[n + 2] = argv[a + 1]
    fields[n + 3] = 'w' .. i; fields[n + 4] = argv[a + 2]
    fields[n + 5] = 'i' .. i; fields[n + 6] = argv[a + 3]
    fields[n + 7] = 'p' .. i; fields[n + 8] = argv[a + 4]
    fields[n + 9] = 'd' .. i; fields[n + 10] = argv[a + 5]
    fields[n + 11] = 'u' .. i; fields[n + 12] = argv[a + 6]
    fields[n + 13] = 'r' .. i; fields[n + 14] = argv[a + 7]
    n = n + 14
    if stride == 10 and argv[a + 8] ~= '' then
      fields[n + 1] = 'k' .. i; fields[n + 2] = argv[a + 8]
      fields[n + 3] = 'e' .. i; fields[n + 4] = argv[a + 9]
      n = n + 4
    end
  end
  rcall('HSET', g, unpack(fields))
  rcall('SADD', graphs_of_key(root, id), gid)
  return { 1 }
end

redis.register_function('wf1_graph_stage', graph_stage)
end
