// The agent's part of mesh opt-in (src/agent/mesh.ts) without a kernel: when the
// capture routing is installed and removed, and what a failure to install it means.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NodeMesh } from '../../src/agent/mesh.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('the capture routing', () => {
	test('mesh on: installed at start, before any compile; the node meshes pods', async () => {
		const calls: string[] = [];
		const m = new NodeMesh(true, { install: async () => (calls.push('install'), true), remove: async () => (calls.push('remove'), true) }, quiet);
		assert.equal(m.active, false, 'nothing is meshed before the routing is in place');
		await m.start();
		assert.equal(m.active, true);
		m.applied();
		await m.settled();
		assert.deepEqual(calls, ['install']);
		assert.equal(m.routing, 'installed');
	});

	test('mesh off: removed once, after the first applied compile (the flags are cleared by then)', async () => {
		const calls: string[] = [];
		const m = new NodeMesh(false, { install: async () => (calls.push('install'), true), remove: async () => (calls.push('remove'), true) }, quiet);
		await m.start();
		assert.deepEqual(calls, [], 'not at start: a previous agent’s flags may still steer packets to the ztunnel');
		m.applied();
		m.applied();
		await m.settled();
		assert.deepEqual(calls, ['remove']);
		assert.equal(m.routing, 'removed');
		assert.equal(m.active, false);
	});

	test('a removal that fails is the last error and is tried again after the next compile', async () => {
		let fail = true;
		let tries = 0;
		const m = new NodeMesh(false, { install: async () => true, remove: async () => (tries++, fail ? Promise.reject(new Error('EBUSY')) : true) }, quiet);
		m.applied();
		await m.settled();
		assert.equal(m.lastError, 'capture routing: EBUSY');
		assert.equal(m.routing, 'unknown');
		fail = false;
		m.applied();
		await m.settled();
		assert.equal(tries, 2);
		assert.equal(m.routing, 'removed');
	});

	test('a routing that cannot be installed meshes no pod and is the last error', async () => {
		const err = Object.assign(new Error('Operation not permitted'), { code: 'EPERM' });
		let removed = 0;
		const m = new NodeMesh(
			true,
			{
				install: () => Promise.reject(err),
				remove: async () => (removed++, true),
			},
			quiet,
		);
		await m.start();
		assert.equal(m.active, false);
		assert.equal(m.routing, 'failed');
		assert.match(m.lastError ?? '', /capture routing: Operation not permitted/);
		m.applied();
		await m.settled();
		assert.equal(removed, 1, 'what was half-installed is removed');
		assert.equal(m.routing, 'failed', 'and the failure stays visible');
	});
});
