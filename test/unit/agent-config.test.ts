// weir-agent's configuration (src/agent/main.ts): the config directory as a mounted
// ConfigMap lays it out, precedence flags > config dir > defaults, the node name, the
// CNI server's configuration, and deploy/base/configmap.yaml read the way the agent reads it.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { AgentConfig, DEFAULT_AGENT_CONFIG } from '../../src/agent/app.js';
import { CONFIG_KEYS, ConfigError, MainOptions, buildMainCli, cniConfig, readConfigDir, resolveConfig } from '../../src/agent/config.js';
import { DEFAULT_CNI_CONFIG } from '../../src/cni-plugin/service.js';
import { buildPath, repoRoot } from '../../src/shared/package.js';

let dir: string;

beforeEach(() => {
	dir = mkdtempSync(join(tmpdir(), 'weir-agent-config-'));
});

afterEach(() => {
	rmSync(dir, { recursive: true, force: true });
});

/** Lays out settings as the kubelet mounts a ConfigMap: ..<timestamp>/ with the files, ..data -> it, and a link per key. */
function configMapDir(data: Record<string, string>): string {
	const mount = join(dir, 'etc-weir');
	const ts = '..2026_01_01_00_00_00.000000001';
	mkdirSync(join(mount, ts), { recursive: true });
	for (const [k, v] of Object.entries(data)) writeFileSync(join(mount, ts, k), v);
	symlinkSync(ts, join(mount, '..data'));
	for (const k of Object.keys(data)) symlinkSync(join('..data', k), join(mount, k));
	return mount;
}

function configError(fn: () => unknown): ConfigError {
	try {
		fn();
	} catch (err) {
		assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
		assert.equal(err.code, 'WEIR_ERR_CONFIG');
		return err;
	}
	assert.fail('expected a ConfigError');
}

/** weir-agent's own flag parsing up to the resolved configuration (nothing is started). */
async function fromCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ cfg: AgentConfig; o: MainOptions }> {
	const saved = process.env['NODE_NAME'];
	if (env['NODE_NAME'] === undefined) delete process.env['NODE_NAME'];
	else process.env['NODE_NAME'] = env['NODE_NAME'];
	try {
		let got: { cfg: AgentConfig; o: MainOptions } | undefined;
		await buildMainCli(async (cfg, o) => void (got = { cfg, o }))
			.exitOverride()
			.configureOutput({ writeErr: () => undefined })
			.parseAsync(['node', 'weir-agent', ...args]);
		assert.ok(got, 'the agent would have run');
		return got;
	} finally {
		if (saved === undefined) delete process.env['NODE_NAME'];
		else process.env['NODE_NAME'] = saved;
	}
}

describe('readConfigDir', () => {
	test('reads a mounted ConfigMap: values trimmed, numbers as numbers, ..data and other dot entries ignored', () => {
		const mount = configMapDir({
			'log-level': 'debug\n',
			'observer-port': ' 9100\n',
			'flow-buffer': '16',
			'pin-root': '/sys/fs/bpf/weir-b',
			kubeconfig: '/etc/kc',
		});
		writeFileSync(join(mount, '.hidden'), 'x');
		assert.deepEqual(readConfigDir(mount), { logLevel: 'debug', observerPort: 9100, flowBuffer: 16, pinRoot: '/sys/fs/bpf/weir-b', kubeconfig: '/etc/kc' });
	});

	test('a missing directory is no settings', () => {
		assert.deepEqual(readConfigDir(join(dir, 'none')), {});
	});

	test('an unknown key is an error naming the file and the known keys', () => {
		const mount = configMapDir({ 'observer-prot': '9962' });
		const e = configError(() => readConfigDir(mount));
		assert.ok(e.message.includes(join(mount, 'observer-prot')), e.message);
		assert.match(e.message, /unknown setting 'observer-prot'/);
		assert.ok(e.message.includes(`known: ${Object.keys(CONFIG_KEYS).join(', ')}`), e.message);
	});

	test('a numeric key that is not a whole number is an error naming the file and the value', () => {
		for (const [key, raw] of [
			['observer-port', 'http'],
			['flow-buffer', '-1'],
			['ct-gc-interval-ms', '1.5'],
			['observer-port', ''],
		] as const) {
			const sub = join(dir, `${key}-${raw || 'empty'}`);
			mkdirSync(sub);
			writeFileSync(join(sub, key), raw);
			const e = configError(() => readConfigDir(sub));
			assert.ok(e.message.startsWith(`${join(sub, key)}: '${raw}' is not a whole number`), e.message);
		}
	});
});

describe('resolveConfig', () => {
	test('defaults when nothing is set but the node name', () => {
		assert.deepEqual(resolveConfig({ nodeName: 'n1' }, {}), { ...DEFAULT_AGENT_CONFIG, nodeName: 'n1' });
	});

	test('flags over the config dir over defaults, key by key', () => {
		const configDir = configMapDir({ 'observer-port': '9100', 'log-level': 'debug', 'pin-root': '/sys/fs/bpf/from-dir', 'node-name': 'dir-node' });
		const cfg = resolveConfig({ configDir, observerPort: 9200, nodeName: 'flag-node' }, {});
		assert.equal(cfg.observerPort, 9200, 'flag beats the dir');
		assert.equal(cfg.nodeName, 'flag-node');
		assert.equal(cfg.logLevel, 'debug', 'dir beats the default');
		assert.equal(cfg.pinRoot, '/sys/fs/bpf/from-dir');
		assert.equal(cfg.flowBuffer, DEFAULT_AGENT_CONFIG.flowBuffer, 'default where neither is set');
		assert.equal(cfg.observerHost, DEFAULT_AGENT_CONFIG.observerHost);
	});

	test('the node name: flag, else config dir, else NODE_NAME; missing is WEIR_ERR_CONFIG', () => {
		assert.equal(resolveConfig({}, { NODE_NAME: 'env-node' }).nodeName, 'env-node');
		assert.equal(resolveConfig({ nodeName: 'flag-node' }, { NODE_NAME: 'env-node' }).nodeName, 'flag-node');
		assert.equal(resolveConfig({ configDir: configMapDir({ 'node-name': 'dir-node' }) }, { NODE_NAME: 'env-node' }).nodeName, 'dir-node');
		const e = configError(() => resolveConfig({}, {}));
		assert.match(e.message, /node name is unknown: pass --node-name or set NODE_NAME/);
		configError(() => resolveConfig({ nodeName: '' }, { NODE_NAME: '' }));
	});

	test('a bad config dir fails resolution', () => {
		configError(() => resolveConfig({ nodeName: 'n1', configDir: configMapDir({ colour: 'blue' }) }, {}));
	});
});

describe('weir-agent flags', () => {
	test('flags parse into the same precedence; commander defaults do not hide the config dir', async () => {
		const configDir = configMapDir({ 'pin-root': '/sys/fs/bpf/from-dir', 'observer-port': '9100', 'flow-buffer': '64' });
		const { cfg } = await fromCli(['--config-dir', configDir, '--flow-buffer', '128'], { NODE_NAME: 'env-node' });
		assert.equal(cfg.nodeName, 'env-node');
		assert.equal(cfg.pinRoot, '/sys/fs/bpf/from-dir', 'pin-root from the ConfigMap is used');
		assert.equal(cfg.observerPort, 9100);
		assert.equal(cfg.flowBuffer, 128);
		assert.equal((await fromCli(['--node-name', 'n1'])).cfg.pinRoot, DEFAULT_AGENT_CONFIG.pinRoot);
	});

	test('mesh: on by default, off by flag or ConfigMap key; anything but true/false is refused', async () => {
		assert.equal((await fromCli(['--node-name', 'n1'])).cfg.mesh, true);
		assert.equal((await fromCli(['--node-name', 'n1', '--mesh', 'false'])).cfg.mesh, false);
		assert.equal((await fromCli(['--node-name', 'n1', '--config-dir', configMapDir({ mesh: 'false\n' })])).cfg.mesh, false);
		await assert.rejects(fromCli(['--node-name', 'n1', '--mesh', 'off']), /true or false/);
		const sub = join(dir, 'mesh-bad');
		mkdirSync(sub);
		writeFileSync(join(sub, 'mesh'), 'enabled');
		assert.match(configError(() => readConfigDir(sub)).message, /'enabled' is neither true nor false/);
	});

	test("ztunnel-flow-socket: the ztunnel's records socket by default, another by flag or ConfigMap key, '' for none", async () => {
		assert.equal((await fromCli(['--node-name', 'n1'])).cfg.ztunnelFlowSocket, '/var/run/weir/ztunnel/flows.sock');
		assert.equal((await fromCli(['--node-name', 'n1', '--ztunnel-flow-socket', '/tmp/z.sock'])).cfg.ztunnelFlowSocket, '/tmp/z.sock');
		assert.equal((await fromCli(['--node-name', 'n1', '--ztunnel-flow-socket', ''])).cfg.ztunnelFlowSocket, '');
		const cm = configMapDir({ 'ztunnel-flow-socket': '/run/other.sock\n' });
		assert.equal((await fromCli(['--node-name', 'n1', '--config-dir', cm])).cfg.ztunnelFlowSocket, '/run/other.sock');
	});

	test("root-namespace: weir-system (the ztunnel's) by default, by flag or ConfigMap key; not a namespace name is refused", async () => {
		assert.equal((await fromCli(['--node-name', 'n1'])).cfg.rootNamespace, 'weir-system');
		assert.equal((await fromCli(['--node-name', 'n1', '--root-namespace', 'istio-system'])).cfg.rootNamespace, 'istio-system');
		assert.equal(
			(await fromCli(['--node-name', 'n1', '--config-dir', configMapDir({ 'root-namespace': 'istio-system\n' })])).cfg.rootNamespace,
			'istio-system',
		);
		for (const bad of ['', 'Istio_System']) await assert.rejects(fromCli(['--node-name', 'n1', '--root-namespace', bad]), /is not a namespace name/);
	});

	test('a non-numeric numeric flag is refused; no node name anywhere is WEIR_ERR_CONFIG', async () => {
		await assert.rejects(fromCli(['--node-name', 'n1', '--observer-port', 'http']), /a whole number/);
		await assert.rejects(fromCli([]), (err: Error & { code?: string }) => err.code === 'WEIR_ERR_CONFIG');
	});
});

describe('cniConfig', () => {
	test('endpoints from a file: no CNI server', () => {
		assert.equal(cniConfig({ endpointsFile: '/tmp/e.json', cniSocket: '/x.sock' }), undefined);
	});

	test('defaults, and every flag carried over', async () => {
		assert.deepEqual(cniConfig({}), {
			socketPath: DEFAULT_CNI_CONFIG.socketPath,
			stateFile: DEFAULT_CNI_CONFIG.stateFile,
			confDir: '/etc/cni/net.d',
			binDir: '/opt/cni/bin',
			pluginSource: buildPath('cni/weir-cni'),
			conflist: { name: 'weir', cniVersion: '1.0.0', portmap: true },
		});
		const c = cniConfig({
			cniSocket: '/run/w.sock',
			cniStateFile: '/run/w.json',
			cniConfDir: '/c',
			cniBinDir: '/b',
			cniPlugin: '/p/weir-cni',
			cniVersion: '1.1.0',
			podCidr: '10.244.3.0/24',
			portmap: false,
		});
		assert.deepEqual(c, {
			socketPath: '/run/w.sock',
			stateFile: '/run/w.json',
			confDir: '/c',
			binDir: '/b',
			pluginSource: '/p/weir-cni',
			conflist: { name: 'weir', cniVersion: '1.1.0', portmap: false, podCidr: '10.244.3.0/24' },
		});
		// --no-portmap through the flags
		const { o } = await fromCli(['--node-name', 'n1', '--no-portmap', '--pod-cidr', '10.244.4.0/24']);
		assert.deepEqual(cniConfig(o)?.conflist, { name: 'weir', cniVersion: '1.0.0', portmap: false, podCidr: '10.244.4.0/24' });
	});
});

test('deploy/base/configmap.yaml is a config dir the agent accepts, with the values it says', () => {
	const cm = parse(readFileSync(join(repoRoot, 'deploy', 'base', 'configmap.yaml'), 'utf8')) as { data: Record<string, string> };
	const mount = configMapDir(cm.data);
	const read = readConfigDir(mount) as Record<string, unknown>;
	for (const [key, raw] of Object.entries(cm.data)) {
		const field = (CONFIG_KEYS as Record<string, string>)[key];
		assert.ok(field, `${key} is a known setting`);
		assert.equal(String(read[field]), raw.trim(), key);
	}
});
