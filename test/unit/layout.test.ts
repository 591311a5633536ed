// The TypeScript mirror (src/bpf/layout.ts) must match the C headers the eBPF
// programs are built from: sizes, offsets and constants, as the C compiler sees them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
	CtFlags,
	Dir,
	DropReason,
	EVENT_RECORDS,
	EndpointFlags,
	EventType,
	Family,
	IPCACHE_STATIC_PREFIX,
	Identity,
	IpcacheFlags,
	LB_MAX_BACKENDS,
	LbFlags,
	LbSourceFlags,
	Match,
	METRICS_ENTRIES,
	METRICS_EVENTS_LOST,
	MapName,
	MtlsPortMode,
	mapMacro,
	POLICY_FIXED_PREFIX,
	POLICY_FULL_PREFIX,
	PolicyFlags,
	REASON_MAX,
	Structs,
	Verdict,
} from '../../src/kernel/layout.js';
import { repoRoot } from '../../src/shared/package.js';

const shared = resolve(repoRoot, 'native/bpf/shared');

const constants: Array<[string, number]> = [
	...Object.entries(DropReason).map(([k, v]): [string, number] => [k === 'OK' ? 'WEIR_OK' : `WEIR_DROP_${k}`, v]),
	['WEIR_FAMILY_IPV4', Family.IPv4],
	['WEIR_FAMILY_IPV6', Family.IPv6],
	['WEIR_ID_UNKNOWN', Identity.Unknown],
	['WEIR_ID_HOST', Identity.Host],
	['WEIR_ID_WORLD', Identity.World],
	['WEIR_ID_INIT', Identity.Init],
	['WEIR_ID_REMOTE_NODE', Identity.RemoteNode],
	['WEIR_ID_FIRST_POD', Identity.FirstPod],
	['WEIR_ID_FIRST_CIDR', Identity.FirstCidr],
	['WEIR_DIR_INGRESS', Dir.Ingress],
	['WEIR_DIR_EGRESS', Dir.Egress],
	['WEIR_EP_INGRESS_ISOLATED', EndpointFlags.IngressIsolated],
	['WEIR_EP_EGRESS_ISOLATED', EndpointFlags.EgressIsolated],
	['WEIR_EP_MESHED', EndpointFlags.Meshed],
	['WEIR_EP_MTLS_STRICT', EndpointFlags.MtlsStrict],
	['WEIR_EP_MTLS_PORTS', EndpointFlags.MtlsPorts],
	['WEIR_MTLS_PERMISSIVE', MtlsPortMode.Permissive],
	['WEIR_MTLS_STRICT', MtlsPortMode.Strict],
	['WEIR_EVENT_DROP', EventType.Drop],
	['WEIR_EVENT_POLICY_VERDICT', EventType.PolicyVerdict],
	['WEIR_EVENT_SOCK_DROP', EventType.SockDrop],
	['WEIR_VERDICT_FORWARDED', Verdict.Forwarded],
	['WEIR_VERDICT_DROPPED', Verdict.Dropped],
	['WEIR_VERDICT_AUDIT', Verdict.Audit],
	['WEIR_MATCH_NONE', Match.None],
	['WEIR_MATCH_NOT_ISOLATED', Match.NotIsolated],
	['WEIR_MATCH_L3_L4', Match.L3L4],
	['WEIR_MATCH_L3_ONLY', Match.L3Only],
	['WEIR_MATCH_L4_ONLY', Match.L4Only],
	['WEIR_MATCH_ALL', Match.All],
	['WEIR_MATCH_HOST', Match.Host],
	['WEIR_CT_F_SEEN_REPLY', CtFlags.SeenReply],
	['WEIR_CT_F_SYN', CtFlags.Syn],
	['WEIR_CT_F_FIN_FWD', CtFlags.FinFwd],
	['WEIR_CT_F_FIN_REV', CtFlags.FinRev],
	['WEIR_CT_F_RST', CtFlags.Rst],
	['WEIR_CT_F_ICMP', CtFlags.Icmp],
	['WEIR_CT_F_PROXY', CtFlags.Proxy],
	['WEIR_POLICY_F_ALL_PROTOCOLS', PolicyFlags.AllProtocols],
	['WEIR_IPCACHE_STATIC_PREFIX', IPCACHE_STATIC_PREFIX],
	['WEIR_IPCACHE_F_MESHED', IpcacheFlags.Meshed],
	['WEIR_POLICY_FIXED_PREFIX', POLICY_FIXED_PREFIX],
	['WEIR_POLICY_FULL_PREFIX', POLICY_FULL_PREFIX],
	['WEIR_REASON_MAX', REASON_MAX],
	['WEIR_METRICS_ENTRIES', METRICS_ENTRIES],
	['WEIR_METRICS_EVENTS_LOST', METRICS_EVENTS_LOST],
	['WEIR_LB_MAX_BACKENDS', LB_MAX_BACKENDS],
	['WEIR_LB_F_AFFINITY', LbFlags.Affinity],
	['WEIR_LB_SRC_MESHED', LbSourceFlags.Meshed],
];

interface CLayout {
	sizes: Record<string, number>;
	offsets: Record<string, number>;
	constants: Record<string, number>;
	maps: Record<string, string>;
}

function compileAndRun(): CLayout {
	const dir = mkdtempSync(join(tmpdir(), 'weir-layout-'));
	try {
		const lines: string[] = [
			'#include <stdio.h>',
			'#include <stddef.h>',
			'#include "weir_datapath.h"',
			'#include "weir_drop_reasons.h"',
			'#include "weir_lb.h"',
			'#define S_(x) #x',
			'#define S(x) S_(x)',
			'int main(void) {',
			'printf("{\\"sizes\\":{");',
		];
		const structs = Object.values(Structs);
		structs.forEach((s, i) => {
			lines.push(`printf("\\"${s.name}\\":%zu${i < structs.length - 1 ? ',' : ''}", sizeof(struct ${s.name}));`);
		});
		lines.push('printf("},\\"offsets\\":{");');
		const fields = structs.flatMap((s) => s.fields.map((fl) => `${s.name}.${fl.name}`));
		fields.forEach((k, i) => {
			const [s, fl] = k.split('.');
			lines.push(`printf("\\"${k}\\":%zu${i < fields.length - 1 ? ',' : ''}", offsetof(struct ${s}, ${fl}));`);
		});
		lines.push('printf("},\\"constants\\":{");');
		constants.forEach(([name], i) => {
			lines.push(`printf("\\"${name}\\":%lld${i < constants.length - 1 ? ',' : ''}", (long long)(${name}));`);
		});
		lines.push('printf("},\\"maps\\":{");');
		const maps = Object.keys(MapName) as Array<keyof typeof MapName>;
		maps.forEach((k, i) => {
			const macro = mapMacro(k);
			lines.push(`printf("\\"${k}\\":\\"%s\\"${i < maps.length - 1 ? ',' : ''}", S(${macro}));`);
		});
		lines.push('printf("}}\\n"); return 0; }');
		writeFileSync(join(dir, 'layout.c'), lines.join('\n'));
		execFileSync('gcc', ['-Wall', '-Werror', '-I', shared, '-o', join(dir, 'layout'), join(dir, 'layout.c')]);
		return JSON.parse(execFileSync(join(dir, 'layout'), { encoding: 'utf8' })) as CLayout;
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

const c = compileAndRun();

test('every shared struct has the size the C compiler gives it', () => {
	for (const s of Object.values(Structs)) {
		assert.equal(s.size, c.sizes[s.name], `sizeof(struct ${s.name})`);
	}
});

test('every field sits at the offset the C compiler gives it', () => {
	for (const s of Object.values(Structs)) {
		for (const fl of s.fields) {
			assert.equal(fl.offset, c.offsets[`${s.name}.${fl.name}`], `offsetof(struct ${s.name}, ${fl.name})`);
		}
	}
});

test('constants and enum values match the C headers', () => {
	for (const [name, value] of constants) {
		assert.equal(value, c.constants[name], name);
	}
});

test('every ring-buffer record starts with weir_event_hdr, so its type tells records apart', () => {
	const hdr = Structs.weir_event_hdr;
	assert.equal(hdr.size, 16);
	const types: number[] = [];
	for (const [name, recordTypes] of Object.entries(EVENT_RECORDS)) {
		const rec = Structs[name as keyof typeof Structs];
		assert.ok(rec.size >= hdr.size, name);
		// The header's fields, at the header's offsets (checked against C above); its last
		// byte is each record's own (weir_event: tcp_flags).
		for (const fl of hdr.fields.slice(0, -1)) {
			const same = rec.fields.find((r) => r.name === fl.name);
			assert.deepEqual(
				same && { offset: same.offset, size: same.size, type: same.type },
				{ offset: fl.offset, size: fl.size, type: fl.type },
				`${name}.${fl.name}`,
			);
		}
		assert.ok(
			rec.fields.some((r) => r.offset === hdr.size - 1 && r.size === 1),
			`${name}: one byte at offset ${hdr.size - 1}`,
		);
		types.push(...recordTypes);
	}
	assert.deepEqual(types.sort(), Object.values(EventType).slice().sort(), 'every event type is one record struct');
});

/**
 * The maps an eBPF object defines: its `.maps` section symbols (libbpf names a
 * BTF-defined map after its variable and pins it under that name).
 */
function objectMapNames(obj: string): string[] {
	const syms = execFileSync('llvm-objdump', ['-t', obj], { encoding: 'utf8' });
	return [...syms.matchAll(/^[0-9a-f]+\s.*\s\.maps\s+[0-9a-f]+\s+(\S+)$/gm)].map((m) => m[1]!).sort();
}

test('map names match the C headers and the compiled datapath', () => {
	// Every WEIR_MAP_* macro of the shared headers has its TypeScript name, and the other way round.
	const headers = readdirSync(shared).filter((f) => f.endsWith('.h'));
	const macros = headers.flatMap((h) => [...readFileSync(join(shared, h), 'utf8').matchAll(/^#define\s+(WEIR_MAP_\w+)\s/gm)].map((m) => m[1]!)).sort();
	const keys = Object.keys(MapName) as Array<keyof typeof MapName>;
	assert.deepEqual(keys.map(mapMacro).sort(), macros);
	for (const k of keys) {
		assert.equal(MapName[k], c.maps[k], mapMacro(k));
	}
	// The programs as built now (the real Makefile, into a scratch directory) define
	// exactly those maps: one declared under another name than its macro fails here.
	const out = mkdtempSync(join(tmpdir(), 'weir-maps-'));
	try {
		execFileSync('make', ['-s', '-C', resolve(repoRoot, 'native/bpf'), `OUT=${out}`], { stdio: ['ignore', 'ignore', 'pipe'] });
		const objects = readdirSync(out).filter((f) => f.endsWith('.bpf.o'));
		assert.deepEqual(objects.sort(), ['pod_tc.bpf.o', 'sock_lb.bpf.o'], `built: ${objects.join(', ')}`);
		const defined = new Set<string>();
		for (const o of objects) {
			const names = objectMapNames(join(out, o));
			assert.ok(names.length > 0, `${o}: no .maps symbols found`);
			for (const n of names) {
				assert.ok(Object.values(MapName).includes(n as never), `${o} defines map ${n}, which no WEIR_MAP_* macro names`);
				defined.add(n);
			}
		}
		assert.deepEqual([...defined].sort(), Object.values(MapName).slice().sort());
	} finally {
		rmSync(out, { recursive: true, force: true });
	}
});

test('every drop reason in the C registry is known to TypeScript', () => {
	const text = readFileSync(join(shared, 'weir_drop_reasons.h'), 'utf8');
	const inC = [...text.matchAll(/^#define\s+WEIR_DROP_(\w+)\s+(-\d+)/gm)].map((m) => [m[1]!, Number(m[2])] as const);
	assert.ok(inC.length >= 8, 'registry parsed');
	for (const [name, code] of inC) {
		assert.equal((DropReason as Record<string, number>)[name], code, `WEIR_DROP_${name}`);
	}
	const codes = inC.map(([, code]) => code);
	assert.equal(new Set(codes).size, codes.length, 'drop codes are unique');
	for (const code of codes) assert.ok(-code < REASON_MAX, `${code} fits the metrics array`);
});
