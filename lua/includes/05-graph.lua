-- Graphs of child runs (ctx.step.graph, Gush's `after:`): each node's run is created by the call that ends
-- the last of its dependencies, in the graph's shard, so a node starts as soon as it can, the parent is not
-- woken per node and no worker goes between two levels. The parent parks once on the graph and is woken
-- once, when every node is final (or, with the 'fail' policy, when one failed).
--
-- Everything lives in the parent's shard (the node runs too, in the parent's queue): a graph is one slot on
-- a Cluster, and no hand-off between nodes crosses shards.
--   <root>:g:<graph id>  the graph (hash), written by wf1_graph_stage before the park:
--     'N' nodes, 'L' nodes not final yet, 'P' policy ('f' fail, 'c' continue), 'par' the parent run,
--     'pf' the parent's step field, 'q' the node runs' queue, 'roots' the nodes without dependencies
--     ('3,7,'), 'cr' cursor in 'roots', 'A' started (by the park), 'X' ended (the parent was told).
--     Per node <i> (0, 1, ...): 'n<i>' name, 'w<i>' workflow, 'i<i>' input (until the run exists),
--     'p<i>' dependencies not succeeded yet, 'd<i>' dependents ('4,9,'), 'u<i>' dependencies (read by the
--     node's worker for ctx.dependencies), 'r<i>' run id, 's<i>' state (absent: not started, 'R' started,
--     'S' succeeded, 'F' failed, 'C' canceled, 'K' skipped), 'o<i>' output or error text (kept once, read
--     by every dependent), 'c<i>' cursor in 'd<i>', 'k<i>' and 'e<i>' the flow key and spec of a node whose
--     workflow has flow control (until the run exists: it takes a slot of its key as an emit would).
--   <root>:gr:<run id>   the graph ids of a run (set), deleted with the run
--   <root>:gq            nodes whose dependents are still to be released, '<graph id>|<i>' ('|r': the
--                        roots), by due time (zset): worked off by housekeeping (wf1_tick)
-- A node run's 'pf' is GRAPH_NODE and its 'par' is '<parent id>|<graph id>|<i>' ('|r' after it for a
-- root): the claim reads 'par' for every run already, so a worker learns that a run is a graph's node (and
-- where its dependencies' outputs are) without a field read more per claim. Run and graph ids have no '|'.
-- Bounded work: a completion releases at most GRAPH_RELEASES_PER_CALL dependents of its node (about 0.35 ms),
-- a housekeeping call at most GRAPH_RELEASES_PER_TICK (about 0.7 ms; a node's run costs about 20 µs to
-- create), so a node with 10,000 dependents, or 10,000 roots, is released over many calls. The cursor moves
-- in the same call as the counters it decremented: a crash between calls neither loses nor repeats one.
local GRAPH_RELEASES_PER_CALL = 16
local GRAPH_RELEASES_PER_TICK = 32

local function graph_key(root, gid) return root .. ':g:' .. gid end
local function graphs_of_key(root, id) return root .. ':gr:' .. id end

-- Creates node j's run (once: 's<j>' goes from absent to 'R' exactly once). `first`: a root (it comes after
-- nothing, so its worker reads no dependencies: its 'par' ends with '|r').
local function graph_start_node(root, g, gid, j, parent, queue, now, now_text, first)
  if rcall('HSETNX', g, 's' .. j, 'R') == 0 then return end
  local f = rcall('HMGET', g, 'w' .. j, 'i' .. j, 'r' .. j, 'k' .. j, 'e' .. j)
  local wf, id = f[1], f[3]
  if f[4] then rcall('HDEL', g, 'i' .. j, 'k' .. j, 'e' .. j) else rcall('HDEL', g, 'i' .. j) end
  local run = run_key(root, id)
  if rcall('EXISTS', run) == 1 then return end
  rcall('HSET', run, 'wf', wf, 'q', queue, 'st', 'queued', 'in', f[2], 'att', '1', 'ca', now_text,
    'par', parent .. '|' .. gid .. '|' .. j .. (first and '|r' or ''), 'pf', GRAPH_NODE, 'hn', '1')
  count_move(root, wf, id, nil, 'queued')
  if f[4] then flow_enqueue(root, id, wf, f[4], f[5], '0', now, now, true) else make_ready(root, id, wf, '0', now) end
  -- the parent's children: listRuns({ parentId }) lists them, and a cancel of the parent cancels them
  rcall('SADD', children_key(root, parent), id)
end

-- Workers are told when the queue stops being empty: every tick reports the queue's next due time
-- (all are due at once), so a skip cascade of 10,000 nodes sends one message, not 10,000.
local function graph_queue_release(root, item, now)
  local key = root .. ':gq'
  if rcall('ZADD', key, ms(now), item) == 1 and rcall('ZCARD', key) == 1 then notify_workers(root, 't' .. ms(now)) end
end

-- The graph is over: its parent's step gets `state` ('S' or 'F') and `json`, and the parent wakes.
local function graph_end(root, g, parent, field, state, json, now)
  rcall('HSET', g, 'X', '1')
  deliver_to_run(root, parent, field, state, json, 'graph', now)
end

local function graph_succeeded(root, g, gid, parent, field, now)
  graph_end(root, g, parent, field, 'S', '{"k":"graph","f":"graph","s":"succeeded","gid":' .. cjson.encode(gid) .. '}', now)
end

-- Node j will not run: a dependency of it failed, was canceled or was skipped ('continue' policy).
local function graph_skip_node(root, g, gid, j, parent, field, now)
  if rcall('HSETNX', g, 's' .. j, 'K') == 0 then return end
  rcall('HDEL', g, 'i' .. j, 'k' .. j, 'e' .. j)
  if rcall('HINCRBY', g, 'L', '-1') <= 0 then
    graph_succeeded(root, g, gid, parent, field, now)
  elseif rcall('HSTRLEN', g, 'd' .. j) > 0 then
    -- its dependents are skipped by housekeeping: a chain of skips is as long as the graph
    graph_queue_release(root, gid .. '|' .. j, now)
  end
end

-- Releases up to `budget` dependents of node `i` (i = 'r': the graph's roots): starts them when `i`
-- succeeded and it was their last dependency, skips them when it did not succeed. Returns the budget left
-- and whether every dependent is released.
local function graph_release(root, gid, i, now, budget)
  local g = graph_key(root, gid)
  local roots = i == 'r'
  local cursor_field = roots and 'cr' or ('c' .. i)
  local m = rcall('HMGET', g, roots and 'roots' or ('d' .. i), cursor_field, 'X', 'par', 'q', 's' .. i, 'pf')
  local list, pos = m[1], tonumber(m[2]) or 1
  if not list or pos > #list then return budget, true end
  local parent, queue, field = m[4], m[5], m[7]
  -- An ended graph ('fail' policy: a node failed) or a parent that ended (canceled) starts nothing more.
  if m[3] or FINAL[rcall('HGET', run_key(root, parent), 'st') or 'succeeded'] then
    rcall('HSET', g, cursor_field, ms(#list + 1))
    return budget, true
  end
  local mode = roots and 'start' or (m[6] == 'S' and 'dec' or 'skip')
  local now_text = ms(now)
  while budget > 0 and pos <= #list do
    local comma = string.find(list, ',', pos, true)
    local j = string.sub(list, pos, comma - 1)
    pos = comma + 1
    budget = budget - 1
    if mode == 'start' then
      graph_start_node(root, g, gid, j, parent, queue, now, now_text, true)
    elseif mode == 'dec' then
      if rcall('HINCRBY', g, 'p' .. j, '-1') <= 0 then graph_start_node(root, g, gid, j, parent, queue, now, now_text) end
    else
      graph_skip_node(root, g, gid, j, parent, field, now)
    end
  end
  rcall('HSET', g, cursor_field, ms(pos))
  return budget, pos > #list
end

-- The park of a run on its graph starts the graph: its roots are created now, as many as a call may
-- create, the rest by housekeeping. Starts a graph once.
local function graph_start(root, gid, now)
  local g = graph_key(root, gid)
  if rcall('HSETNX', g, 'A', '1') == 0 then return end
  local _, done = graph_release(root, gid, 'r', now, GRAPH_RELEASES_PER_CALL)
  if not done then graph_queue_release(root, gid .. '|r', now) end
end

-- A node run ended (called by notify_parent for a run whose 'pf' is GRAPH_NODE): its state and output go
-- into the graph, then its dependents are released, or the graph ends. `state`: 'S', or 'F' for a failed
-- or canceled run; `payload`: its output or error text. A repeat (the node was told already, or it was
-- retried by hand after the graph recorded it) changes nothing.
graph_node_done = function(root, id, state, payload, now)
  local f = rcall('HMGET', run_key(root, id), 'par', 'st')
  local gid, i = string.match(f[1] or '', '^[^|]*|([^|]*)|(%d+)')
  if not gid then return end
  local g = graph_key(root, gid)
  if rcall('HGET', g, 's' .. i) ~= 'R' then return end
  local s = state == 'S' and 'S' or (f[2] == 'canceled' and 'C' or 'F')
  rcall('HSET', g, 's' .. i, s, 'o' .. i, payload or '')
  local m = rcall('HMGET', g, 'P', 'X', 'par', 'pf')
  if m[2] then return end
  local left = rcall('HINCRBY', g, 'L', '-1')
  if s ~= 'S' and m[1] == 'f' then
    -- as Promise.all: the first failure ends the graph; nodes not started are never started
    graph_end(root, g, m[3], m[4], 'F', '{"k":"graph","f":"graph","s":"failed","gid":' .. cjson.encode(gid) .. ',"ni":' .. i ..
      ',"e":' .. (payload ~= '' and payload or 'null') .. '}', now)
    return
  end
  if left <= 0 then
    graph_succeeded(root, g, gid, m[3], m[4], now)
    return
  end
  if rcall('HSTRLEN', g, 'd' .. i) > 0 then
    local _, done = graph_release(root, gid, i, now, GRAPH_RELEASES_PER_CALL)
    if not done then graph_queue_release(root, gid .. '|' .. i, now) end
  end
end

-- Housekeeping: releases the dependents that the completions could not (more than a call's share, or
-- skips), at most `budget` per call. Returns whether some are left.
local function release_graph_nodes(root, now, budget)
  local items = rcall('ZRANGEBYSCORE', root .. ':gq', '-inf', now, 'LIMIT', 0, budget)
  for _, item in ipairs(items) do
    local bar = string.find(item, '|', 1, true)
    local done
    budget, done = graph_release(root, string.sub(item, 1, bar - 1), string.sub(item, bar + 1), now, budget)
    if done then rcall('ZREM', root .. ':gq', item) end
    if budget <= 0 then return true end
  end
  return #items > 0 and budget <= 0
end

-- A run deleted at the end of its retention takes its graphs with it (UNLINK: a graph of 10,000 nodes is
-- freed in the background).
local function drop_graphs(root, id)
  local key = graphs_of_key(root, id)
  local gids = rcall('SMEMBERS', key)
  for _, gid in ipairs(gids) do rcall('UNLINK', graph_key(root, gid)) end
  if #gids > 0 then rcall('UNLINK', key) end
end
