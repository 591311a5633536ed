// The service map: workloads as boxes inside their namespace, an edge per source ->
// destination workload and port, coloured by verdict (any drop: the drop colour), with
// its counts. Laid out by dagre (left to right) when the set of workloads or edges
// changes; counts update in place. Clicking an edge narrows the flow table to it.
import { Graph, layout } from '@dagrejs/dagre';
import { useMemo } from 'react';
import type { MapEdge, MapNode, ServiceMap as Map } from './api';

export const COLOURS = { DROPPED: '#d6336c', AUDIT: '#f08c00', FORWARDED: '#2b8a3e' } as const;

export function edgeVerdict(e: MapEdge): 'DROPPED' | 'AUDIT' | 'FORWARDED' {
	if (e.counts.DROPPED > 0) return 'DROPPED';
	if (e.counts.AUDIT > 0) return 'AUDIT';
	return 'FORWARDED';
}

function edgeLabel(e: MapEdge): string {
	const parts: string[] = [];
	if (e.counts.FORWARDED) parts.push(`${e.counts.FORWARDED} fwd`);
	if (e.counts.DROPPED) parts.push(`${e.counts.DROPPED} dropped`);
	if (e.counts.AUDIT) parts.push(`${e.counts.AUDIT} audit`);
	return `${e.port !== undefined ? `${e.port}/` : ''}${e.protocol} · ${parts.join(' · ')}`;
}

interface Placed {
	nodes: Array<{ n: MapNode; x: number; y: number; w: number; h: number }>;
	groups: Array<{ ns: string; x: number; y: number; w: number; h: number }>;
	edges: Array<{ e: MapEdge; points: Array<{ x: number; y: number }>; lx: number; ly: number }>;
	width: number;
	height: number;
}

const NODE_W = 150;
const NODE_H = 40;

function place(map: Map): Placed {
	const g = new Graph({ compound: true, multigraph: true });
	g.setGraph({ rankdir: 'LR', nodesep: 30, ranksep: 120, marginx: 20, marginy: 20 });
	g.setDefaultEdgeLabel(() => ({}));
	const namespaces = new Set<string>();
	for (const n of map.nodes) {
		g.setNode(n.id, { width: NODE_W, height: NODE_H });
		if (n.kind === 'workload' && n.namespace) {
			namespaces.add(n.namespace);
			g.setNode(`ns:${n.namespace}`, { paddingTop: 24 });
			g.setParent(n.id, `ns:${n.namespace}`);
		}
	}
	for (const e of map.edges) g.setEdge(e.source, e.destination, { width: 150, height: 18, labelpos: 'c' }, e.id);
	layout(g);
	const out: Placed = { nodes: [], groups: [], edges: [], width: 0, height: 0 };
	for (const n of map.nodes) {
		const p = g.node(n.id) as { x: number; y: number; width: number; height: number };
		out.nodes.push({ n, x: p.x, y: p.y, w: p.width, h: p.height });
	}
	for (const ns of namespaces) {
		const p = g.node(`ns:${ns}`) as { x: number; y: number; width: number; height: number };
		out.groups.push({ ns, x: p.x, y: p.y, w: p.width, h: p.height });
	}
	for (const e of map.edges) {
		const p = g.edge({ v: e.source, w: e.destination, name: e.id }) as { points: Array<{ x: number; y: number }>; x?: number; y?: number };
		const mid = p.points[Math.floor(p.points.length / 2)] ?? { x: 0, y: 0 };
		out.edges.push({ e, points: p.points, lx: p.x ?? mid.x, ly: p.y ?? mid.y });
	}
	const graph = g.graph() as { width?: number; height?: number };
	out.width = Math.max(200, graph.width ?? 0);
	out.height = Math.max(120, graph.height ?? 0);
	return out;
}

/** A key that changes only when the layout must: the workloads and edges, not their counts. */
function shapeKey(map: Map): string {
	return `${map.nodes.map((n) => n.id).join(',')}|${map.edges.map((e) => e.id).join(',')}`;
}

function path(points: Array<{ x: number; y: number }>): string {
	return points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
}

export function ServiceMapView(props: { map: Map; selected?: string; onSelectEdge: (e: MapEdge | undefined) => void }) {
	const key = shapeKey(props.map);
	// Laid out again only when the shape changes (the key), not on every count.
	const placed = useMemo(() => place(props.map), [key]);
	const current = new globalThis.Map(props.map.edges.map((e) => [e.id, e]));
	if (!props.map.nodes.length) {
		return (
			<div className="map-empty" data-testid="service-map">
				No flows yet in the selected namespaces.
			</div>
		);
	}
	return (
		<svg
			className="map"
			data-testid="service-map"
			viewBox={`0 0 ${placed.width} ${placed.height}`}
			preserveAspectRatio="xMidYMin meet"
			role="img"
			aria-label="service map"
		>
			<defs>
				{Object.entries(COLOURS).map(([v, c]) => (
					<marker key={v} id={`arrow-${v}`} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
						<path d="M0,0 L10,5 L0,10 z" fill={c} />
					</marker>
				))}
			</defs>
			{placed.groups.map((g) => (
				<g key={g.ns} className="ns-group" data-testid="map-namespace" data-namespace={g.ns}>
					<rect x={g.x - g.w / 2} y={g.y - g.h / 2} width={g.w} height={g.h} rx={8} />
					<text x={g.x - g.w / 2 + 10} y={g.y - g.h / 2 + 16}>
						{g.ns}
					</text>
				</g>
			))}
			{placed.edges.map(({ e: laidOut, points, lx, ly }) => {
				const e = current.get(laidOut.id) ?? laidOut;
				const v = edgeVerdict(e);
				const sel = props.selected === e.id;
				return (
					<g
						key={e.id}
						className={`edge${sel ? ' selected' : ''}`}
						data-testid="map-edge"
						data-source={e.source}
						data-destination={e.destination}
						data-port={e.port ?? ''}
						data-verdict={v}
						data-forwarded={e.counts.FORWARDED}
						data-dropped={e.counts.DROPPED}
						onClick={() => props.onSelectEdge(sel ? undefined : e)}
					>
						<title>
							{`${e.source} → ${e.destination} ${edgeLabel(e)}${e.policies.isolatedBy.length ? `\nisolated by ${e.policies.isolatedBy.join(', ')}` : ''}${e.policies.allowedBy.length ? `\nallowed by ${e.policies.allowedBy.join(', ')}` : ''}`}
						</title>
						<path className="hit" d={path(points)} />
						<path d={path(points)} stroke={COLOURS[v]} strokeWidth={sel ? 4 : 2.5} fill="none" markerEnd={`url(#arrow-${v})`} />
						<rect x={lx - 75} y={ly - 9} width={150} height={18} rx={4} className="edge-label-bg" />
						<text x={lx} y={ly + 4} textAnchor="middle" className="edge-label" fill={COLOURS[v]}>
							{edgeLabel(e)}
						</text>
					</g>
				);
			})}
			{placed.nodes.map(({ n, x, y, w, h }) => (
				<g key={n.id} className={`wl ${n.kind}`} data-testid="map-node" data-id={n.id}>
					<title>{[n.id, ...n.labels].join('\n')}</title>
					<rect x={x - w / 2} y={y - h / 2} width={w} height={h} rx={6} />
					<text x={x} y={y + 5} textAnchor="middle">
						{n.name.length > 20 ? `${n.name.slice(0, 19)}…` : n.name}
					</text>
				</g>
			))}
		</svg>
	);
}
