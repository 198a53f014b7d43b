-- Stitching rules, SQL form, part 1: agent runs and the agent run each span is attributed to, within a trace.
-- The same rules as collector_ext/stitching.py (its docstring states them; a test holds both equal):
--   * an agent run is a span with category 'agent' that runs no graph node, or the run of a graph: the parent
--     of a span that runs a graph node (graph_node: LangGraph's graph or sub-graph, whose node spans, e.g. the
--     ReAct steps marked AGENT, are not runs); except a wrapper: an agent run with no llm, embedding, tool or
--     retrieval span of its own and exactly one agent run directly inside it (agent_wrappers);
--   * a span belongs to its nearest enclosing agent run (itself for an agent span), walking parent_span_id;
--     where the chain breaks (a parent not written, e.g. --keep genai) the receiver's agent_span_id is used
--     if that agent span is in the trace; a span outside every agent run belongs to the trace's top agent
--     run: the first-started agent run with no agent run above it (ties: smallest span_id);
--   * agent name: own agent identity, the span name unless generic ('invoke_agent X' gives X), service.name.

-- The runs of graphs: the parents of the spans that run a graph node (usually none: a narrow scan).
CREATE OR REPLACE TEMP TABLE graph_runs AS
SELECT DISTINCT trace_id, parent_span_id AS span_id
FROM spans
WHERE graph_node IS NOT NULL AND parent_span_id IS NOT NULL;

-- Spans' tree structure only (every table below is computed once per connection).
CREATE OR REPLACE TEMP TABLE span_tree AS
SELECT s.trace_id, s.span_id,
       CASE WHEN EXISTS (SELECT 1 FROM spans AS p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id)
            THEN s.parent_span_id END AS parent_span_id,  -- NULL: a root
       s.category = 'agent' AND s.graph_node IS NULL AS is_agent,  -- graph runs: set below
       s.category IN ('llm', 'embedding', 'tool', 'retrieval') AS is_work,
       s.start_time, s.agent_span_id AS receiver_agent_span_id
FROM spans AS s;

UPDATE span_tree SET is_agent = true
FROM graph_runs AS g
WHERE span_tree.trace_id = g.trace_id AND span_tree.span_id = g.span_id;

-- Wrappers: with every agent span taken as a run, the agent runs that enclose no work of their own and
-- exactly one agent run directly; they are not agent runs (is_agent cleared), the walk below runs again.
CREATE OR REPLACE TEMP TABLE agent_wrappers AS
WITH RECURSIVE walk(trace_id, span_id, agent_span_id, steps) AS (
    SELECT trace_id, span_id, span_id, 0 FROM span_tree
    WHERE is_agent AND trace_id IN (SELECT trace_id FROM span_tree WHERE is_agent GROUP BY trace_id HAVING count(*) > 1)
    UNION ALL
    SELECT c.trace_id, c.span_id, w.agent_span_id, w.steps + 1
    FROM walk AS w
    JOIN span_tree AS c ON c.trace_id = w.trace_id AND c.parent_span_id = w.span_id
    WHERE NOT c.is_agent AND w.steps < 10000
),
first_enclosing AS (SELECT DISTINCT trace_id, span_id, agent_span_id FROM walk),
inner_runs AS (
    SELECT e.trace_id, e.agent_span_id, count(*) AS runs
    FROM span_tree AS a
    JOIN first_enclosing AS e ON e.trace_id = a.trace_id AND e.span_id = a.parent_span_id
    WHERE a.is_agent
    GROUP BY ALL
),
working AS (
    SELECT DISTINCT e.trace_id, e.agent_span_id
    FROM span_tree AS t
    JOIN first_enclosing AS e ON e.trace_id = t.trace_id AND e.span_id = t.span_id
    WHERE t.is_work
)
SELECT i.trace_id, i.agent_span_id AS span_id
FROM inner_runs AS i
ANTI JOIN working AS w ON w.trace_id = i.trace_id AND w.agent_span_id = i.agent_span_id
WHERE i.runs = 1;

UPDATE span_tree SET is_agent = false
FROM agent_wrappers AS w
WHERE span_tree.trace_id = w.trace_id AND span_tree.span_id = w.span_id;

-- Nearest enclosing agent run: walk down from every agent run through the spans that are not agent runs.
-- Each span is reached from exactly one agent run (its nearest); the step bound only guards malformed data.
CREATE OR REPLACE TEMP TABLE span_enclosing_agent AS
WITH RECURSIVE walk(trace_id, span_id, agent_span_id, steps) AS (
    SELECT trace_id, span_id, span_id, 0 FROM span_tree WHERE is_agent
    UNION ALL
    SELECT c.trace_id, c.span_id, w.agent_span_id, w.steps + 1
    FROM walk AS w
    JOIN span_tree AS c ON c.trace_id = w.trace_id AND c.parent_span_id = w.span_id
    WHERE NOT c.is_agent AND w.steps < 10000
)
SELECT DISTINCT trace_id, span_id, agent_span_id FROM walk;

-- Each agent run's enclosing agent run in the same trace (NULL: a top-level agent run of its trace).
CREATE OR REPLACE TEMP TABLE agent_in_trace AS
SELECT a.trace_id, a.span_id, a.start_time, e.agent_span_id AS above_span_id
FROM span_tree AS a
LEFT JOIN span_enclosing_agent AS e ON e.trace_id = a.trace_id AND e.span_id = a.parent_span_id
WHERE a.is_agent;

CREATE OR REPLACE TEMP TABLE trace_top_agent AS
SELECT trace_id, span_id AS top_agent_span_id
FROM (
    SELECT trace_id, span_id,
           row_number() OVER (PARTITION BY trace_id ORDER BY start_time, span_id) AS nth
    FROM agent_in_trace
    WHERE above_span_id IS NULL
)
WHERE nth = 1;

-- The agent run every span is attributed to (NULL only in traces without any agent run).
CREATE OR REPLACE TEMP TABLE span_agent AS
SELECT t.trace_id, t.span_id,
       coalesce(e.agent_span_id, h.span_id, top.top_agent_span_id) AS agent_span_id
FROM span_tree AS t
LEFT JOIN span_enclosing_agent AS e ON e.trace_id = t.trace_id AND e.span_id = t.span_id
LEFT JOIN agent_in_trace AS h ON h.trace_id = t.trace_id AND h.span_id = t.receiver_agent_span_id
LEFT JOIN trace_top_agent AS top ON top.trace_id = t.trace_id;
