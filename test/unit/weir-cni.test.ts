// The weir-cni executable (native/cni/weir-cni.c) run as a runtime runs it: env and
// stdin in, JSON out. Two unix sockets in a scratch directory stand in for the agent
// at the right and the wrong path; each records what reached it and answers. No root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';

const WEIR_CNI = resolve(repoRoot, 'build/cni/weir-cni');

interface Run {
	code: number | null;
	stdout: string;
	json: Record<string, unknown> | undefined;
}

function weirCni(env: Record<string, string>, stdin: string | Buffer): Promise<Run> {
	return new Promise((res, rej) => {
		const child = spawn(WEIR_CNI, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
		let stdout = '';
		child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
		child.on('error', rej);
		child.on('close', (code) => {
			let json: Record<string, unknown> | undefined;
			try {
				json = JSON.parse(stdout) as Record<string, unknown>;
			} catch {
				json = undefined;
			}
			res({ code, stdout, json });
		});
		child.stdin.end(stdin);
	});
}

describe('weir-cni reads its configuration', () => {
	const dir = mkdtempSync(join(tmpdir(), 'weir-cni-unit-'));
	const right = join(dir, 'right.sock');
	const wrong = join(dir, 'wrong.sock');
	const envSock = join(dir, 'env.sock');
	const hits: Record<string, number> = {};
	const servers: Server[] = [];
	const env = (command = 'ADD'): Record<string, string> => ({
		CNI_COMMAND: command,
		CNI_CONTAINERID: 'c1',
		CNI_NETNS: '/run/netns/none',
		CNI_IFNAME: 'eth0',
		WEIR_CNI_SOCKET: envSock,
	});
	const conf = (extra: string): string => `{"cniVersion": "1.0.0", "name": "weir", "type": "weir-cni", ${extra}}`;

	/** Which socket the request went to (its answer names it). */
	async function reached(stdin: string, command = 'ADD'): Promise<string> {
		const r = await weirCni(env(command), stdin);
		assert.equal(r.code, 0, r.stdout);
		return String(r.json?.['socket']);
	}

	async function decodeError(stdin: string | Buffer, code = 6): Promise<Record<string, unknown>> {
		const before = { ...hits };
		const r = await weirCni(env(), stdin);
		assert.notEqual(r.code, 0, `exit status for ${JSON.stringify(String(stdin))}`);
		assert.ok(r.json, `stdout is JSON: ${r.stdout}`);
		assert.equal(r.stdout.trim().split('\n').length, 1, 'one JSON object on stdout, nothing else');
		assert.equal(r.json['code'], code, r.stdout);
		assert.equal(typeof r.json['msg'], 'string');
		assert.equal(typeof r.json['cniVersion'], 'string');
		assert.deepEqual(hits, before, 'answered without the agent');
		return r.json;
	}

	before(async () => {
		assert.ok(existsSync(WEIR_CNI), `${WEIR_CNI} missing: run make -C native/cni`);
		for (const [name, path] of [
			['right', right],
			['wrong', wrong],
			['env', envSock],
		] as const) {
			hits[name] = 0;
			const s = createServer({ allowHalfOpen: true }, (c) => {
				c.on('data', () => {});
				c.on('end', () => {
					hits[name]!++;
					c.end(`0\n${JSON.stringify({ socket: name })}`);
				});
			});
			await new Promise<void>((r) => s.listen(path, r));
			servers.push(s);
		}
	});

	after(async () => {
		await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
		rmSync(dir, { recursive: true, force: true });
	});

	test('the top-level agentSocket, never one nested in an object or an array', async () => {
		assert.equal(await reached(conf(`"ipam": {"type": "host-local", "agentSocket": "${wrong}"}, "agentSocket": "${right}"`)), 'right');
		assert.equal(await reached(conf(`"plugins": [{"agentSocket": "${wrong}"}], "agentSocket": "${right}"`)), 'right');
		assert.equal(await reached(conf(`"args": ["agentSocket", "${wrong}"], "agentSocket": "${right}"`)), 'right');
		assert.equal(await reached(conf(`"note": "\\"agentSocket\\": \\"${wrong}\\"", "agentSocket": "${right}"`)), 'right');
		// Nested only: the environment's socket, as when the config names none.
		assert.equal(await reached(conf(`"ipam": {"agentSocket": "${right}"}`)), 'env');
		assert.equal(await reached(conf('"ipam": {}')), 'env');
	});

	test('agentSocket as JSON.parse reads it: escapes decoded, the last of repeated keys', async () => {
		assert.equal(await reached(conf(`"agentSocket": ${JSON.stringify(right).replaceAll('/', '\\/')}`)), 'right');
		assert.equal(await reached(conf(`"agent\\u0053ocket": "${right}"`)), 'right');
		assert.equal(await reached(conf(`"agentSocket": "${wrong}", "agentSocket": "${right}"`)), 'right');
		const deep = '['.repeat(100) + ']'.repeat(100);
		assert.equal(await reached(conf(`"x": ${deep}, "y": -1.5e+3, "z": [true, false, null, "\\ud83d\\ude00"], "agentSocket": "${right}"`)), 'right');
	});

	test('malformed JSON: error 6 on stdout, non-zero exit, the agent not asked', async () => {
		for (const bad of [
			'',
			'   ',
			'{"cniVersion": "1.0.0", ',
			`${conf(`"agentSocket": "${right}"`)} trailing`,
			`{'cniVersion': '1.0.0'}`,
			'{"cniVersion": "1.0.0",}',
			'{"a": 01}',
			'{"a": "\\x"}',
			'{"a": "tab\there"}',
			'{"a": [1, 2}',
			'{"a" 1}',
			'{"a": tru}',
			'['.repeat(600) + ']'.repeat(600),
		]) {
			const e = await decodeError(bad);
			assert.match(String(e['details']), /invalid JSON at byte \d+: expected /);
		}
		const e = await decodeError(Buffer.from([0x7b, 0x00, 0x7d]));
		assert.match(String(e['details']), /at byte 1/);
		// JSON, but not an object.
		for (const other of ['[]', '"weir"', '42', 'null']) {
			assert.equal((await decodeError(other))['details'], 'expected a JSON object');
		}
	});

	test('tells JSON from not-JSON as JSON.parse does, on mutated configurations', async () => {
		const seeds = [
			conf('"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}]]}, "a": [1, -2.5e+3, true, false, null, "\\u00e9\\ud83d\\ude00\\n"]'),
			'{}',
			'[]',
			'"s"',
			'-0.1E-2',
			'{"a": {"b": [{}, []]}}',
			' \n{ "k" : "v" } \t',
		];
		const alphabet = '{}[]":,\\ -0123456789.eEtrufalsn\u00e9\t\n\u0001ab';
		let seed = 0x5eed;
		const rnd = (k: number): number => {
			seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
			return (seed >>> 8) % k;
		};
		for (let i = 0; i < 300; i++) {
			let text = seeds[rnd(seeds.length)]!;
			for (let m = rnd(4); m > 0; m--) {
				const at = rnd(text.length + 1);
				const op = rnd(3);
				if (op === 0) text = text.slice(0, at) + alphabet[rnd(alphabet.length)] + text.slice(at);
				else if (op === 1) text = text.slice(0, at) + text.slice(at + 1);
				else text = text.slice(0, at) + text.slice(at, at + 5) + text.slice(at);
			}
			let want: string;
			try {
				const o = JSON.parse(text) as unknown;
				want = typeof o === 'object' && o !== null && !Array.isArray(o) ? 'object' : 'other';
			} catch {
				want = 'malformed';
			}
			const r = await weirCni(env(), text);
			const got = r.code === 0 ? 'object' : r.json?.['details'] === 'expected a JSON object' ? 'other' : r.json?.['code'] === 6 ? 'malformed' : r.stdout;
			assert.equal(got, want, JSON.stringify(text));
		}
	});

	test('an unusable top-level agentSocket is error 7; VERSION tolerates any stdin', async () => {
		for (const v of ['42', 'null', '"relative.sock"', `"/${'x'.repeat(107)}"`, '"/with\\u0000nul"']) {
			await decodeError(conf(`"agentSocket": ${v}`), 7);
		}
		assert.equal(await reached('not json', 'VERSION'), 'env');
		assert.equal(await reached('', 'VERSION'), 'env');
	});

	test("the error JSON names the request's cniVersion only when it is a plain version", async () => {
		assert.equal((await decodeError('{"cniVersion": "0.4.0", "agentSocket": 1}', 7))['cniVersion'], '0.4.0');
		assert.equal((await decodeError('{"cniVersion": "1.0\\"x", "agentSocket": 1}', 7))['cniVersion'], '1.1.0');
		assert.equal((await decodeError('{"cniVersion": "0.4.0", "x": }'))['cniVersion'], '1.1.0');
	});
});
