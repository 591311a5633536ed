// SPIFFE IDs: strict parsing and formatting of spiffe://<td>/ns/<ns>/sa/<sa>.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkTrustDomain, formatSpiffeId, parseSpiffeId, spiffeIdFor, SpiffeIdError } from '../../src/identity/spiffe.js';

test('parses and formats workload SPIFFE IDs', () => {
	const id = parseSpiffeId('spiffe://cluster.local/ns/c-app/sa/app');
	assert.deepEqual(id, { trustDomain: 'cluster.local', namespace: 'c-app', serviceAccount: 'app' });
	assert.equal(formatSpiffeId(id), 'spiffe://cluster.local/ns/c-app/sa/app');
	assert.deepEqual(parseSpiffeId('spiffe://example_td-1.org/ns/a/sa/build.bot-1', 'example_td-1.org').serviceAccount, 'build.bot-1');
	assert.equal(formatSpiffeId(spiffeIdFor('cluster.local', 'x', 'y')), 'spiffe://cluster.local/ns/x/sa/y');
	assert.equal(parseSpiffeId(`spiffe://cluster.local/ns/${'a'.repeat(63)}/sa/b`).namespace.length, 63);
});

test('rejects every other spelling with WEIR_ERR_SPIFFE_ID', () => {
	const bad = [
		'',
		'spiffe://',
		'spiffe://cluster.local',
		'spiffe://cluster.local/',
		'SPIFFE://cluster.local/ns/a/sa/b',
		'spiffe://Cluster.local/ns/a/sa/b',
		'https://cluster.local/ns/a/sa/b',
		'spiffe://cluster.local:8443/ns/a/sa/b',
		'spiffe://user@cluster.local/ns/a/sa/b',
		'spiffe:///ns/a/sa/b',
		'spiffe://cluster.local/ns/a/sa/b/',
		'spiffe://cluster.local/ns/a/sa/b?x=1',
		'spiffe://cluster.local/ns/a/sa/b#f',
		'spiffe://cluster.local/ns/a/sa/b%20',
		'spiffe://cluster.local/ns//sa/b',
		'spiffe://cluster.local/ns/a/sa/',
		'spiffe://cluster.local/sa/b/ns/a',
		'spiffe://cluster.local/ns/a/sa/b/extra',
		'spiffe://cluster.local/ns/A/sa/b',
		'spiffe://cluster.local/ns/a.b/sa/c',
		'spiffe://cluster.local/ns/-a/sa/b',
		`spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/b`,
		'spiffe://cluster.local/ns/a/sa/B',
		'spiffe://cluster.local/ns/a/sa/b..c',
		'spiffe://cluster.local/ns/a/sa/b_c',
		` spiffe://cluster.local/ns/a/sa/b`,
		`spiffe://cluster.local/ns/a/sa/${'b'.repeat(2100)}`,
	];
	for (const s of bad) {
		assert.throws(
			() => parseSpiffeId(s),
			(e: unknown) => e instanceof SpiffeIdError && e.code === 'WEIR_ERR_SPIFFE_ID' && e.message.length > 10,
			JSON.stringify(s),
		);
	}
});

test('an expected trust domain must match', () => {
	assert.throws(() => parseSpiffeId('spiffe://other.td/ns/a/sa/b', 'cluster.local'), /trust domain "other.td", not "cluster.local"/);
	assert.throws(() => checkTrustDomain('Cluster.Local'), SpiffeIdError);
	assert.throws(() => checkTrustDomain(''), SpiffeIdError);
	assert.equal(checkTrustDomain('prod.example.com'), 'prod.example.com');
	assert.throws(() => spiffeIdFor('cluster.local', 'a', 'B'), SpiffeIdError);
});
