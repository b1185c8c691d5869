import net from 'node:net';

/** One command as MONITOR reports it: who sent it ('lua' for calls made inside a function) and its arguments. */
export interface MonitoredCommand {
  source: string;
  args: string[];
}

/**
 * MONITOR over a plain socket. ioredis' monitor() drops into a "Command queue state error" when the first
 * monitored lines arrive in the same read as MONITOR's +OK (it switches modes a microtask later), which a
 * busy server makes likely; here every line after +OK is a command.
 *
 * `complete`: how the caller knows every command it waits for has been seen. MONITOR sends its lines
 * after the commands ran, and a burst's lines can take longer than the usual 50 ms to arrive; they are
 * waited for (up to 5 s) until it returns true.
 */
export async function monitorCommands(
  url: string,
  during: () => Promise<void>,
  complete?: (seen: MonitoredCommand[]) => boolean,
): Promise<MonitoredCommand[]> {
  const { hostname, port, password, username } = new URL(url);
  const socket = net.connect(Number(port || 6379), hostname || '127.0.0.1');
  const seen: MonitoredCommand[] = [];
  let buffer = '';
  // +OK of AUTH (when the URL has a password), then of MONITOR; every line after those is a command.
  let okToCome = password ? 2 : 1;
  const started = new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (line.startsWith('-')) reject(new Error(`MONITOR failed: ${line}`));
        else if (okToCome > 0 && line === '+OK') {
          if (--okToCome === 0) resolve();
        } else if (okToCome === 0) {
          const parsed = parseMonitorLine(line);
          if (parsed) seen.push(parsed);
        }
      }
    });
  });
  if (password) socket.write(`AUTH ${username ? `${decodeURIComponent(username)} ` : ''}${decodeURIComponent(password)}\r\n`);
  socket.write('MONITOR\r\n');
  await started;
  try {
    await during();
    const until = Date.now() + 5_000;
    while (complete && !complete(seen) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    // Lines of the last commands may still be on their way.
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    socket.destroy();
  }
  return seen;
}

/** '+1700000000.123456 [0 127.0.0.1:5000] "fcall" "wf1_emit" ...' -> { source: '127.0.0.1:5000', args }. */
export function parseMonitorLine(line: string): MonitoredCommand | undefined {
  const match = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
  if (!match) return undefined;
  const args: string[] = [];
  for (const arg of match[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
    args.push(arg[1].replace(/\\x([0-9a-f]{2})|\\(.)/gi, (_, hex: string | undefined, ch: string | undefined) => (hex ? String.fromCharCode(parseInt(hex, 16)) : ch === 'n' ? '\n' : ch === 'r' ? '\r' : ch === 't' ? '\t' : ch!)));
  }
  return { source: match[1], args };
}

/** An FCALL as MONITOR saw it: its function, how many arguments it carried and how many commands it ran. */
export interface MonitoredCall {
  fn: string;
  args: number;
  commands: number;
}

/**
 * The FCALLs among monitored commands, each with the commands it ran inside (MONITOR lists them right after
 * the call, from the source 'lua'): how much work each call did, whatever the machine's speed.
 */
export function fcallsWithWork(seen: MonitoredCommand[]): MonitoredCall[] {
  const calls: MonitoredCall[] = [];
  let current: MonitoredCall | undefined;
  for (const command of seen) {
    if (command.source === 'lua') {
      if (current) current.commands += 1;
    } else {
      current = /^fcall/i.test(command.args[0] ?? '') ? { fn: command.args[1], args: command.args.length, commands: 0 } : undefined;
      if (current) calls.push(current);
    }
  }
  return calls;
}
