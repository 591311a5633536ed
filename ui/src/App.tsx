// Weir's flow UI: namespaces (one, several or all), the live service map, the flow
// table with its filters and details, the nodes and whether their flows are read.
// Everything comes from the relay's API; the relay aggregates, the page renders a window.
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, flowQuery, followFlows, HOST_SOURCES, NO_FILTERS, type Filters, type MapEdge, type NodeStatus, type ServiceMap } from './api';
import { FlowDetails } from './FlowDetails';
import { FlowTable, type Row } from './FlowTable';
import { ServiceMapView } from './ServiceMap';

/** rows kept in the page: the table shows a window of the newest */
export const MAX_ROWS = 5000;
const FLUSH_MS = 100;
const POLL_MS = 2000;

function NamespacePicker(props: { all: string[]; selected: string[]; onChange: (ns: string[]) => void }) {
	const [open, setOpen] = useState(false);
	const label = props.selected.length === 0 ? 'All namespaces' : props.selected.length === 1 ? props.selected[0]! : `${props.selected.length} namespaces`;
	const toggle = (ns: string): void => props.onChange(props.selected.includes(ns) ? props.selected.filter((x) => x !== ns) : [...props.selected, ns].sort());
	return (
		<div className="picker" data-testid="namespace-picker">
			<button onClick={() => setOpen(!open)} data-testid="namespace-button" aria-expanded={open}>
				{label} ▾
			</button>
			{open ? (
				<div className="picker-menu" role="listbox" aria-multiselectable="true">
					<label>
						<input type="checkbox" checked={props.selected.length === 0} onChange={() => props.onChange([])} data-testid="namespace-all" /> All
					</label>
					{props.all.map((ns) => (
						<label key={ns}>
							<input type="checkbox" checked={props.selected.includes(ns)} onChange={() => toggle(ns)} data-testid={`namespace-${ns}`} /> {ns}
						</label>
					))}
				</div>
			) : null}
		</div>
	);
}

function NodesBar(props: { nodes: NodeStatus[]; error?: string }) {
	return (
		<div className="nodes" data-testid="nodes">
			{props.error ? <span className="node unavailable">relay: {props.error}</span> : null}
			{props.nodes.map((n) => (
				<span
					key={n.name}
					className={`node ${n.state}`}
					data-testid="node-status"
					data-node={n.name}
					data-state={n.state}
					title={n.error ?? `${n.flows} flows read from ${n.endpoint ?? '?'}`}
				>
					{n.name}: {n.state}
					{n.state === 'unavailable' && n.error ? ` — ${n.error}` : ''}
				</span>
			))}
		</div>
	);
}

const TEXT_FILTERS = [
	['pod', 'pod: [ns/]name'],
	['label', 'label: app=redis'],
	['port', 'port'],
] as const;

function FilterBar(props: { f: Filters; set: (f: Filters) => void }) {
	const { f, set } = props;
	const [text, setText] = useState({ pod: f.pod, label: f.label, port: f.port });
	useEffect(() => setText({ pod: f.pod, label: f.label, port: f.port }), [f.pod, f.label, f.port]);
	// Text filters apply after a short pause in typing (or Enter), not on each key.
	useEffect(() => {
		const t = setTimeout(() => {
			if (text.pod !== f.pod || text.label !== f.label || text.port !== f.port) set({ ...f, ...text });
		}, 400);
		return () => clearTimeout(t);
	}, [text, f, set]);
	const apply = (e: React.KeyboardEvent): void => {
		if (e.key === 'Enter') set({ ...f, ...text });
	};
	return (
		<div className="filters" data-testid="filters">
			<select
				value={f.verdict}
				onChange={(e) => set({ ...f, verdict: e.target.value as Filters['verdict'] })}
				data-testid="filter-verdict"
				aria-label="verdict"
			>
				<option value="">any verdict</option>
				<option value="FORWARDED">FORWARDED</option>
				<option value="DROPPED">DROPPED</option>
				<option value="AUDIT">AUDIT</option>
			</select>
			{TEXT_FILTERS.map(([key, placeholder]) => (
				<input
					key={key}
					placeholder={placeholder}
					value={text[key]}
					onChange={(e) => setText({ ...text, [key]: key === 'port' ? e.target.value.replace(/\D/g, '') : e.target.value })}
					onKeyDown={apply}
					data-testid={`filter-${key}`}
					aria-label={key}
					className={key}
					{...(key === 'port' ? { inputMode: 'numeric' as const } : {})}
				/>
			))}
			<select value={f.protocol} onChange={(e) => set({ ...f, protocol: e.target.value })} data-testid="filter-protocol" aria-label="protocol">
				<option value="">any protocol</option>
				<option value="TCP">TCP</option>
				<option value="UDP">UDP</option>
				<option value="SCTP">SCTP</option>
				<option value="ICMPv4">ICMPv4</option>
			</select>
			{f.fromWorkload || f.toWorkload ? (
				<button
					className="chip"
					onClick={() => set({ ...f, fromWorkload: '', toWorkload: '', port: '' })}
					data-testid="filter-edge"
					title="clear the edge filter"
				>
					{f.fromWorkload} → {f.toWorkload} ×
				</button>
			) : null}
			<label className="toggle" title="leave out traffic from the nodes themselves: kubelet probes, host processes">
				<input type="checkbox" checked={f.hideHost} onChange={(e) => set({ ...f, hideHost: e.target.checked })} data-testid="filter-hide-host" /> hide host
				traffic
			</label>
			<button onClick={() => set({ ...NO_FILTERS, namespaces: f.namespaces, hideHost: f.hideHost })} data-testid="filter-clear">
				clear
			</button>
		</div>
	);
}

/** The map without the edges from the nodes themselves, and the boxes only they used. */
function withoutHost(map: ServiceMap): ServiceMap {
	const hidden = new Set(HOST_SOURCES.map((r) => `reserved:${r}`));
	const edges = map.edges.filter((e) => !hidden.has(e.source));
	const used = new Set(edges.flatMap((e) => [e.source, e.destination]));
	return { nodes: map.nodes.filter((n) => used.has(n.id)), edges, evicted: map.evicted };
}

export function App() {
	const [filters, setFilters] = useState<Filters>(NO_FILTERS);
	const [namespaces, setNamespaces] = useState<string[]>([]);
	const [nodes, setNodes] = useState<NodeStatus[]>([]);
	const [relayError, setRelayError] = useState<string | undefined>();
	const [map, setMap] = useState<ServiceMap>({ nodes: [], edges: [], evicted: 0 });
	const [rows, setRows] = useState<Row[]>([]);
	const [paused, setPaused] = useState(false);
	const [held, setHeld] = useState(0);
	const [selected, setSelected] = useState<Row | undefined>();
	const [edge, setEdge] = useState<string | undefined>();
	const [streamError, setStreamError] = useState<string | undefined>();
	const [rate, setRate] = useState(0);
	const [lost, setLost] = useState(0);
	const pending = useRef<Row[]>([]);
	const pausedRef = useRef(false);
	const nextId = useRef(0);
	const received = useRef(0);

	// Nodes and namespaces, polled.
	useEffect(() => {
		const ac = new AbortController();
		const tick = (): void => {
			api.nodes(ac.signal).then(
				(n) => {
					setNodes(n);
					setRelayError(undefined);
				},
				(e: Error) => !ac.signal.aborted && setRelayError(e.message),
			);
			api.namespaces(ac.signal).then(setNamespaces, () => {});
		};
		tick();
		const t = setInterval(tick, POLL_MS);
		return () => {
			clearInterval(t);
			ac.abort();
		};
	}, []);

	// The service map of the selected namespaces, polled (the relay aggregates it).
	const nsKey = filters.namespaces.join(',');
	useEffect(() => {
		const ac = new AbortController();
		const tick = (): void => void api.serviceMap(filters.namespaces, ac.signal).then(setMap, () => {});
		tick();
		const t = setInterval(tick, POLL_MS);
		return () => {
			clearInterval(t);
			ac.abort();
		};
	}, [nsKey]);

	// The flow stream for the current filters; lines are batched and rendered at most every FLUSH_MS.
	const qKey = flowQuery(filters, { last: 500, follow: true }).toString();
	useEffect(() => {
		const ac = new AbortController();
		setRows([]);
		pending.current = [];
		setHeld(0);
		setStreamError(undefined);
		const run = async (): Promise<void> => {
			while (!ac.signal.aborted) {
				try {
					await followFlows(
						new URLSearchParams(qKey),
						(e) => {
							if (e.kind === 'flow') {
								received.current++;
								pending.current.push({ id: nextId.current++, flow: e.flow });
								if (pending.current.length > MAX_ROWS) pending.current.splice(0, pending.current.length - MAX_ROWS);
							} else if (e.kind === 'lost') setLost((n) => n + e.lost);
						},
						ac.signal,
					);
				} catch (err) {
					if (ac.signal.aborted) return;
					setStreamError((err as Error).message);
					if (/must|cannot|unknown/.test((err as Error).message)) return; // a bad query: retrying will not help
				}
				await new Promise((r) => setTimeout(r, 1000));
			}
		};
		void run();
		const flush = setInterval(() => {
			if (pausedRef.current) {
				setHeld(pending.current.length);
				return;
			}
			if (!pending.current.length) return;
			const add = pending.current.reverse();
			pending.current = [];
			setRows((old) => {
				const next = add.concat(old);
				return next.length > MAX_ROWS ? next.slice(0, MAX_ROWS) : next;
			});
		}, FLUSH_MS);
		return () => {
			ac.abort();
			clearInterval(flush);
		};
	}, [qKey]);

	// flows/s received, for the header
	useEffect(() => {
		let last = received.current;
		const t = setInterval(() => {
			setRate(received.current - last);
			last = received.current;
		}, 1000);
		return () => clearInterval(t);
	}, []);

	const togglePause = useCallback(() => {
		pausedRef.current = !pausedRef.current;
		setPaused(pausedRef.current);
		if (!pausedRef.current) setHeld(0);
	}, []);

	const selectEdge = (e: MapEdge | undefined): void => {
		setEdge(e?.id);
		const node = (id: string): string => (id.includes('/') && !id.includes(':') ? id : '');
		if (e) setFilters({ ...filters, fromWorkload: node(e.source), toWorkload: node(e.destination), port: e.port !== undefined ? String(e.port) : '' });
		else setFilters({ ...filters, fromWorkload: '', toWorkload: '', port: '' });
	};

	return (
		<div className="app">
			<header className="top">
				<h1>Weir</h1>
				<NamespacePicker all={namespaces} selected={filters.namespaces} onChange={(ns) => setFilters({ ...filters, namespaces: ns })} />
				<NodesBar nodes={nodes} {...(relayError ? { error: relayError } : {})} />
				<span className="rate" data-testid="rate">
					{rate} flows/s{lost ? ` · ${lost} lost` : ''}
				</span>
			</header>
			<main>
				<section className="map-pane">
					<div className="legend">
						<span className="fwd">forwarded</span>
						<span className="drop">dropped</span>
						<span className="audit">audit</span>
						<span className="hint">click an edge to see its flows</span>
					</div>
					<ServiceMapView map={filters.hideHost ? withoutHost(map) : map} {...(edge ? { selected: edge } : {})} onSelectEdge={selectEdge} />
				</section>
				<section className="flows-pane">
					<div className="toolbar">
						<FilterBar f={filters} set={setFilters} />
						<button className={paused ? 'resume' : 'pause'} onClick={togglePause} data-testid="pause">
							{paused ? `Resume${held ? ` (${held} new)` : ''}` : 'Pause'}
						</button>
						<span className="count" data-testid="row-count">
							{rows.length} flows
						</span>
					</div>
					{streamError ? (
						<div className="error" data-testid="stream-error">
							{streamError}
						</div>
					) : null}
					<div className="flows-body">
						<FlowTable rows={rows} {...(selected ? { selected: selected.id } : {})} onSelect={setSelected} />
						{selected ? <FlowDetails flow={selected.flow} onClose={() => setSelected(undefined)} /> : null}
					</div>
				</section>
			</main>
		</div>
	);
}
