// The flow table: newest first, virtualised (only the rows in view are in the DOM, so
// thousands of flows cost the same as thirty), each row naming the policy that allowed
// or denied the flow. Clicking a row opens its details.
import { useVirtualizer } from '@tanstack/react-virtual';
import { useRef } from 'react';
import { endpointLabel, policyText, type Flow } from './api';

export const ROW_HEIGHT = 28;

export interface Row {
	id: number;
	flow: Flow;
}

function clock(t: string): string {
	const d = new Date(t);
	return `${d.toISOString().slice(11, 23)}`;
}

function portProto(f: Flow): string {
	const p = f.destination.port;
	const flags = f.tcpFlags?.length ? ` ${f.tcpFlags.join(',')}` : '';
	return `${p !== undefined && p !== 0 ? `${p}/` : ''}${f.protocol}${flags}`;
}

export function FlowTable(props: { rows: Row[]; selected?: number; onSelect: (r: Row) => void }) {
	const parent = useRef<HTMLDivElement>(null);
	const v = useVirtualizer({ count: props.rows.length, getScrollElement: () => parent.current, estimateSize: () => ROW_HEIGHT, overscan: 8 });
	return (
		<div className="table" role="table" aria-label="flows" data-testid="flow-table">
			<div className="row head" role="row">
				<div role="columnheader">Time</div>
				<div role="columnheader">Source</div>
				<div role="columnheader">Destination</div>
				<div role="columnheader">Port / protocol</div>
				<div role="columnheader">Verdict</div>
				<div role="columnheader">Drop reason</div>
				<div role="columnheader">Policy</div>
			</div>
			<div className="body" ref={parent} data-testid="flow-table-body">
				<div style={{ height: v.getTotalSize(), position: 'relative' }}>
					{v.getVirtualItems().map((item) => {
						const r = props.rows[item.index]!;
						const f = r.flow;
						return (
							<div
								key={r.id}
								role="row"
								className={`row ${f.verdict.toLowerCase()}${props.selected === r.id ? ' selected' : ''}`}
								data-testid="flow-row"
								data-verdict={f.verdict}
								style={{ position: 'absolute', top: 0, left: 0, right: 0, height: ROW_HEIGHT, transform: `translateY(${item.start}px)` }}
								onClick={() => props.onSelect(r)}
							>
								<div role="cell">{clock(f.time)}</div>
								<div role="cell" title={endpointLabel(f.source)}>
									{endpointLabel(f.source)}
								</div>
								<div role="cell" title={endpointLabel(f.destination)}>
									{endpointLabel(f.destination)}
								</div>
								<div role="cell">{portProto(f)}</div>
								<div role="cell" className="verdict">
									{f.verdict}
								</div>
								<div role="cell" title={f.dropReasonDesc ?? ''}>
									{f.dropReason ?? ''}
								</div>
								<div role="cell" className="policy" data-testid="flow-policy" title={policyText(f)}>
									{policyText(f)}
								</div>
							</div>
						);
					})}
				</div>
			</div>
		</div>
	);
}
