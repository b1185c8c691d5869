/**
 * A tiny RESP server that looks like an old Redis (6.2) to ioredis: enough of PING, INFO, CLIENT,
 * SELECT, QUIT to connect. It counts open connections so a test can check that a failed init
 * closed every connection it opened.
 */
import net from 'node:net';

export interface FakeRedis {
  port: number;
  url: string;
  openConnections(): number;
  totalConnections(): number;
  commands: string[];
  close(): Promise<void>;
}

function parseCommands(buffer: string): { commands: string[][]; rest: string } {
  const commands: string[][] = [];
  let pos = 0;
  for (;;) {
    if (pos >= buffer.length) break;
    if (buffer[pos] !== '*') {
      const nl = buffer.indexOf('\r\n', pos);
      if (nl < 0) break;
      commands.push(buffer.slice(pos, nl).split(' '));
      pos = nl + 2;
      continue;
    }
    const nl = buffer.indexOf('\r\n', pos);
    if (nl < 0) break;
    const count = Number(buffer.slice(pos + 1, nl));
    let p = nl + 2;
    const args: string[] = [];
    let complete = true;
    for (let i = 0; i < count; i += 1) {
      const lnl = buffer.indexOf('\r\n', p);
      if (lnl < 0) {
        complete = false;
        break;
      }
      const len = Number(buffer.slice(p + 1, lnl));
      if (buffer.length < lnl + 2 + len + 2) {
        complete = false;
        break;
      }
      args.push(buffer.slice(lnl + 2, lnl + 2 + len));
      p = lnl + 2 + len + 2;
    }
    if (!complete) break;
    commands.push(args);
    pos = p;
  }
  return { commands, rest: buffer.slice(pos) };
}

export async function startFakeOldRedis(version = '6.2.0'): Promise<FakeRedis> {
  const sockets = new Set<net.Socket>();
  const commands: string[] = [];
  let total = 0;
  const info = `# Server\r\nredis_version:${version}\r\nredis_mode:standalone\r\n# Persistence\r\nloading:0\r\n# Replication\r\nrole:master\r\n`;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    total += 1;
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const parsed = parseCommands(buffer);
      buffer = parsed.rest;
      for (const args of parsed.commands) {
        const name = args[0]?.toUpperCase() ?? '';
        commands.push(args.join(' '));
        if (name === 'PING') socket.write('+PONG\r\n');
        else if (name === 'INFO') socket.write(`$${Buffer.byteLength(info)}\r\n${info}\r\n`);
        else if (name === 'QUIT') socket.end('+OK\r\n');
        else if (name === 'HELLO' || name === 'FCALL' || name === 'FCALL_RO' || name === 'FUNCTION') {
          socket.write(`-ERR unknown command '${args[0]}'\r\n`);
        } else socket.write('+OK\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    openConnections: () => sockets.size,
    totalConnections: () => total,
    commands,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
