// How weir-agent's Node runtime is started (image entrypoint, tests, benchmarks).
// A bounded old generation makes V8 collect instead of growing: the agent's working
// set at 1 000 pods x 500 policies is well under it. Two malloc arenas keep glibc from
// holding a free arena per native thread (ring-buffer reader, libuv pool). A larger
// libuv pool lets concurrent CNI ADDs wait out their tcx attaches (RCU grace periods)
// side by side; it must be set before Node starts.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-old-space-size=128', '--max-semi-space-size=4'];
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '16' };
