// How weir-agent's Node runtime is started (image entrypoint, tests, benchmarks).
// A bounded old generation makes V8 collect instead of growing: the agent's working
// set at 1 000 pods x 500 policies is well under this, and the node keeps its memory.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-old-space-size=160', '--max-semi-space-size=8'];
