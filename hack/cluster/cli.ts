#!/usr/bin/env node
// node dist/hack/cluster/cli.js up|down|status|build|kubectl [options]
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { clusterStatus, ensureBuilt, startCluster, stopCluster, type CniSpec, type ClusterMode } from './cluster.js';
import { binPaths } from './versions.js';
import { readState } from './resources.js';

const USAGE = `usage: cli.js <command> [options]
  up      [--name N] [--mode cluster|control-plane] [--cni reference|none]
          [--cni-conf DIR --cni-bin DIR] [--no-kube-proxy] [--no-coredns]
  down    [--name N] [--keep-logs]
  status  [--name N]
  build                    build binaries and images (cached by version)
  kubectl [--name N] -- ARGS   run the built kubectl against the cluster`;

async function main(): Promise<number> {
	const [cmd, ...rest] = process.argv.slice(2);
	const { values, positionals } = parseArgs({
		args: rest,
		allowPositionals: true,
		options: {
			name: { type: 'string', default: 'weir' },
			mode: { type: 'string', default: 'cluster' },
			cni: { type: 'string', default: 'reference' },
			'cni-conf': { type: 'string' },
			'cni-bin': { type: 'string' },
			'no-kube-proxy': { type: 'boolean', default: false },
			'no-coredns': { type: 'boolean', default: false },
			'keep-logs': { type: 'boolean', default: false },
		},
	});
	const name = values.name ?? 'weir';
	switch (cmd) {
		case 'up': {
			const mode = values.mode as ClusterMode;
			if (mode !== 'cluster' && mode !== 'control-plane') throw new Error(`--mode: cluster or control-plane, not ${mode}`);
			let cni: CniSpec;
			if (values['cni-conf'] || values['cni-bin']) {
				if (!values['cni-conf'] || !values['cni-bin']) throw new Error('--cni-conf and --cni-bin go together');
				cni = { confDir: values['cni-conf'], binDir: values['cni-bin'] };
			} else if (values.cni === 'reference' || values.cni === 'none') {
				cni = values.cni;
			} else {
				throw new Error(`--cni: reference or none, not ${values.cni}`);
			}
			const t0 = Date.now();
			const c = await startCluster({
				name,
				mode,
				cni,
				kubeProxy: !values['no-kube-proxy'],
				coreDns: !values['no-coredns'],
			});
			console.log(`cluster "${c.name}" (${c.mode}) is up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
			console.log(`  export KUBECONFIG=${c.kubeconfig}`);
			console.log(`  kubectl:  ${c.bins.kubectl}`);
			console.log(`  server:   ${c.server}`);
			if (c.mode === 'cluster' && !c.kubeProxy) {
				console.log(`  kube-proxy: none (ClusterIPs are not translated; the API server is ${c.apiServerAddress.host}:${c.apiServerAddress.port})`);
			}
			console.log(`  logs:     ${c.logDir}`);
			for (const n of c.nodes) console.log(`  node ${n.name}: netns ${n.netns} ip ${n.nodeIP} podCIDR ${n.podCIDR}`);
			console.log(`  stop:     node dist/hack/cluster/cli.js down --name ${c.name}`);
			return 0;
		}
		case 'down': {
			const t0 = Date.now();
			const rep = await stopCluster(name, { keepLogs: values['keep-logs'] ?? false });
			console.log(`cluster "${name}" down in ${((Date.now() - t0) / 1000).toFixed(1)} s (${rep.killed} processes killed)`);
			for (const l of rep.left) console.log(`  left behind: ${l}`);
			return rep.left.length ? 1 : 0;
		}
		case 'status': {
			const s = clusterStatus(name);
			if (!s.state) {
				console.log(`cluster "${name}": not running`);
				return 1;
			}
			console.log(`cluster "${name}" (${s.state.mode}) ${s.running ? 'running' : 'DEGRADED'} since ${s.state.startedAt}`);
			console.log(`  export KUBECONFIG=${s.state.kubeconfig}`);
			console.log(`  logs: ${s.state.logDir}`);
			for (const p of s.processes) console.log(`  ${p.alive ? 'up  ' : 'DEAD'} ${p.name} (pid ${p.pid})`);
			for (const n of s.state.nodes) console.log(`  node ${n.name}: netns ${n.netns} ip ${n.nodeIP} podCIDR ${n.podCIDR}`);
			return s.running ? 0 : 1;
		}
		case 'build': {
			const t0 = Date.now();
			const imgs = await ensureBuilt();
			for (const [ref, f] of imgs.archives) console.log(`  image ${ref}: ${f}`);
			console.log(`built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
			return 0;
		}
		case 'kubectl': {
			const st = readState(name);
			if (!st) throw new Error(`cluster "${name}" is not running`);
			const r = spawnSync(binPaths().kubectl, ['--kubeconfig', st.kubeconfig, ...positionals], { stdio: 'inherit' });
			return r.status ?? 1;
		}
		default:
			console.error(USAGE);
			return 2;
	}
}

main().then(
	(code) => process.exit(code),
	(err: unknown) => {
		console.error(err instanceof Error ? err.message : err);
		process.exit(1);
	},
);
