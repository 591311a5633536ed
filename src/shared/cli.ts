// What the executables' command lines share: argument parsers for commander, and the
// handler that stops a process on SIGTERM and SIGINT.
import { InvalidArgumentError } from 'commander';

/**
 * A commander argument parser from a check that returns the value or throws. An error
 * that `isUsageError` accepts becomes commander's InvalidArgumentError (its message is
 * what the user is told); any other propagates as it is.
 */
export function checkedArg<T>(check: (v: string) => T, isUsageError: (err: unknown) => boolean): (v: string) => T {
	return (v) => {
		try {
			return check(v);
		} catch (err) {
			if (isUsageError(err)) throw new InvalidArgumentError((err as Error).message);
			throw err;
		}
	};
}

/** The part of a pino logger the signal handler uses. */
export interface SignalLog {
	info(obj: object, msg: string): void;
	error(obj: object, msg: string): void;
}

/**
 * On SIGTERM or SIGINT: logs `message` with the signal, awaits `stop`, and exits 0, or
 * 1 after logging why the stop failed.
 */
export function stopOnSignals(log: SignalLog, message: string, stop: (sig: string) => Promise<void>): void {
	const shutdown = (sig: string): void => {
		log.info({ sig }, message);
		stop(sig).then(
			() => process.exit(0),
			(err: Error) => {
				log.error({ err: err.message }, 'stop failed');
				process.exit(1);
			},
		);
	};
	process.on('SIGTERM', () => shutdown('SIGTERM'));
	process.on('SIGINT', () => shutdown('SIGINT'));
}
