// A TCP proxy run as its own process, so a test can kill it (SIGKILL: every connection
// through it drops at once) and start it again on the same port.
// Usage: node tcp-proxy-main.mjs LISTEN_PORT TARGET_HOST TARGET_PORT
import net from 'node:net';

const [listenPort, targetHost, targetPort] = process.argv.slice(2);
const server = net.createServer((client) => {
  process.stdout.write('connection\n');
  const upstream = net.connect(Number(targetPort), targetHost);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen(Number(listenPort), '127.0.0.1', () => {
  process.stdout.write(`proxy listening on ${server.address().port}\n`);
});
