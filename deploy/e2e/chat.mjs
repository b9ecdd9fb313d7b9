// End-to-end test of the web client (src/http/ui/) in headless Chromium, run by
// src/tests/browser.rs against two nodes started with DEV_UI=1 and typing indicators on.
// Two browser contexts are two users, one on each node: they chat, see typing and read
// receipts, reply, send an emoji and an image, one recalls a message and edits another, the other goes offline
// and finds on return what was sent meanwhile; then an admin sees both nodes and turns a
// setting off. Screenshots of the main steps go to SCREENSHOT_DIR.
//
// Environment: NODE_A_URL, NODE_B_URL, SCREENSHOT_DIR, and NODE_PATH naming the
// node_modules that holds playwright-core (deploy/local/tools.sh installs it in
// target/tools). Exit code 0 when every step passed.

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

// An ES module ignores NODE_PATH; require() honours it.
const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const A_URL = need('NODE_A_URL');
const B_URL = need('NODE_B_URL');
const SHOTS = need('SCREENSHOT_DIR');
const TIMEOUT = 30_000; // per wait: the machine may have two busy cores
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const IMAGE = `data:image/svg+xml;base64,${Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">'
  + '<rect width="120" height="80" rx="10" fill="#2f6fed"/>'
  + '<text x="60" y="50" font-size="26" text-anchor="middle" fill="#fff">dinq</text></svg>',
).toString('base64')}`;

const started = Date.now();
const logs = []; // console output of every page, printed on failure
const pageErrors = []; // uncaught exceptions and logged errors in the client: each one fails the test
const pages = {};

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

function step(text) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** Polls `fn` until it returns something truthy; fails naming `what` after `timeout`. */
async function until(what, fn, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message.split('\n')[0];
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms: ${what} (last: ${last})`);
    await sleep(200);
  }
}

async function textOf(locator) {
  return ((await locator.textContent({ timeout: 2000 })) ?? '').trim();
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

async function openPage(context, url, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    logs.push(`${name} console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error') pageErrors.push(`${name} logged: ${m.text()}`);
  });
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(url);
  pages[name] = page;
  return page;
}

/** Signs in from the login form; returns the user id the page shows once connected. */
async function signIn(page, name, { generate = false, admin = false } = {}) {
  if (generate) await page.getByTestId('login-generate').click();
  const asked = await page.getByTestId('login-user-id').inputValue();
  if (admin) await page.getByTestId('login-admin').check();
  await page.getByTestId('login-submit').click();
  await until(`${name} is connected`, async () =>
    (await textOf(page.getByTestId('connection-status'))) === 'connected');
  const id = await textOf(page.getByTestId('me-id'));
  check(UUID.test(id), `${name} shows a user id (${id})`);
  check(!asked || asked === id, `${name} got the id it asked for (${asked}, got ${id})`);
  check(!generate || UUID.test(asked), `${name} generated an id (${asked})`);
  return id;
}

const message = (page, text) => page.getByTestId('message').filter({ hasText: text });
const conversationWith = (page, peer) =>
  page.locator(`[data-testid="conversation-item"][data-peer="${peer}"]`);

async function sendText(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-input').press('Enter');
  await message(page, text).waitFor(); // the echo: stored by the server
}

async function statusOf(page, text) {
  return textOf(message(page, text).getByTestId('message-status'));
}

async function run(browser) {
  const viewport = { width: 1280, height: 720 };
  const contextA = await browser.newContext({ viewport });
  const contextB = await browser.newContext({ viewport });
  const a = await openPage(contextA, A_URL, 'A');
  let b = await openPage(contextB, B_URL, 'B');

  step('A signs in with an id from the server, B with one generated in the page');
  const idA = await signIn(a, 'A');
  const idB = await signIn(b, 'B', { generate: true });
  check(idA !== idB, 'two different users');

  step('A opens a private chat with B and writes');
  await a.getByTestId('new-private-input').fill(idB);
  await a.getByTestId('new-private-submit').click();
  await until('A sees the chat with B', async () =>
    (await textOf(a.getByTestId('chat-title'))).includes(idB.slice(0, 8)));
  await until('A sees B online', async () => (await textOf(a.getByTestId('peer-status'))) === 'online');
  const hello = 'Hello B, this is A';
  await sendText(a, hello);
  check((await statusOf(a, hello)) === 'sent', 'the message is sent, not read yet');
  await shot(a, '01-a-writes-to-b');

  step('B finds the conversation with one unread message and opens it');
  const itemB = conversationWith(b, idA);
  await until('B sees an unread badge of 1', async () => (await textOf(itemB.getByTestId('unread-badge'))) === '1');
  check((await itemB.getByTestId('online-dot').getAttribute('data-online')) === 'true', 'B sees A online');
  await itemB.click();
  await message(b, hello).waitFor();

  step('A sees that B read it');
  await until('A sees the read receipt', async () => (await statusOf(a, hello)) === 'read');
  await shot(b, '02-b-reads');

  step('B types; A sees B typing; B sends');
  const reply = 'Hi A! Nice to meet you';
  await b.getByTestId('composer-input').pressSequentially(reply, { delay: 60 });
  await until('A sees B typing', async () => {
    const typing = await textOf(a.getByTestId('typing-indicator'));
    return typing.includes('is typing') && typing.includes(idB.slice(0, 8));
  });
  await shot(a, '03-a-sees-b-typing');
  await b.getByTestId('composer-input').press('Enter');
  await message(a, reply).waitFor();
  await until('the typing indicator goes', async () => (await textOf(a.getByTestId('typing-indicator'))) === '');

  step('B answers A\'s first message with a reply');
  await message(b, hello).getByTestId('reply-button').click();
  await b.getByTestId('reply-preview').waitFor();
  const answer = 'Replying to your hello';
  await sendText(b, answer);
  await until('A sees the quote', async () =>
    (await textOf(message(a, answer).getByTestId('message-reply'))).includes(hello));

  step('A sends an emoji and an image');
  const emoji = await textOf(a.getByTestId('emoji-option').first());
  await a.getByTestId('emoji-toggle').click();
  await a.getByTestId('emoji-option').first().click();
  await until('B gets the emoji', async () =>
    (await b.locator('[data-testid="message"] .emoji').allTextContents()).includes(emoji));
  await a.getByTestId('image-url-input').fill(IMAGE);
  await a.getByTestId('image-send').click();
  const image = b.getByTestId('message-image').last();
  await image.waitFor();
  check((await image.getAttribute('src')) === IMAGE, 'B gets the image URL');
  await until('B shows the image', () => image.evaluate((img) => img.complete && img.naturalWidth > 0));

  step('A recalls a message; B sees it recalled');
  const oops = 'This one will be recalled';
  await sendText(a, oops);
  await message(b, oops).waitFor();
  const recalledId = await message(a, oops).getAttribute('data-message-id');
  await message(a, oops).getByTestId('recall-button').click();
  const onB = b.locator(`[data-message-id="${recalledId}"]`);
  await until('B sees the recall', async () => (await onB.getAttribute('data-recalled')) === 'true');
  check(!(await textOf(onB)).includes(oops), 'the recalled text is gone on B');
  check((await textOf(onB.getByTestId('message-recalled'))) === 'Message recalled', 'B says it was recalled');
  await until('A sees its own recall', async () =>
    (await a.locator(`[data-message-id="${recalledId}"]`).getAttribute('data-recalled')) === 'true');
  await shot(b, '04-b-sees-the-recall');

  step('A edits a message; B sees the new text, marked edited');
  const draft = 'This one will be edited';
  const fixed = 'This one was edited';
  await sendText(a, draft);
  await message(b, draft).waitFor();
  const editedId = await message(a, draft).getAttribute('data-message-id');
  a.once('dialog', (dialog) => dialog.accept(fixed));
  await message(a, draft).getByTestId('edit-button').click();
  const editedOnB = b.locator(`[data-message-id="${editedId}"]`);
  await until('B sees the edit', async () => (await textOf(editedOnB.getByTestId('message-text'))) === fixed);
  check((await textOf(editedOnB.getByTestId('message-edited'))) === 'edited', 'B sees it marked edited');
  const editedOnA = a.locator(`[data-message-id="${editedId}"]`);
  await until('A sees its own edit', async () => (await textOf(editedOnA.getByTestId('message-text'))) === fixed);

  step('B closes its page; A sees B go offline and writes twice');
  await b.close();
  await until('A sees B offline', async () => (await textOf(a.getByTestId('peer-status'))) === 'offline');
  const away = ['While you were away (1)', 'While you were away (2)'];
  for (const text of away) await sendText(a, text);
  for (const text of away) check((await statusOf(a, text)) === 'sent', `${text} is not read yet`);
  await shot(a, '05-a-writes-while-b-is-away');

  step('B comes back in a new page and finds both messages');
  b = await openPage(contextB, B_URL, 'B again');
  await until('the form remembers B', async () => (await b.getByTestId('login-user-id').inputValue()) === idB);
  check((await signIn(b, 'B again')) === idB, 'B is B again');
  await until('B is told what arrived while away', async () =>
    (await textOf(b.getByTestId('offline-notice'))).startsWith('2 message(s) arrived while you were offline'));
  const itemBack = conversationWith(b, idA);
  await until('B sees an unread badge of 2', async () => (await textOf(itemBack.getByTestId('unread-badge'))) === '2');
  await itemBack.click();
  for (const text of away) await message(b, text).waitFor();
  await until('A sees B online again', async () => (await textOf(a.getByTestId('peer-status'))) === 'online');
  await until('A sees B read the newest', async () => (await statusOf(a, away[1])) === 'read');
  await shot(b, '06-b-is-back');
  await shot(a, '07-a-sees-b-read-them');

  step('A pins and mutes the chat with B; A\'s page on the other node follows; B\'s view stays B\'s');
  const a2 = await openPage(contextA, B_URL, 'A on the other node');
  await a2.getByTestId('login-user-id').fill(idA); // another origin: the form cannot remember A
  check((await signIn(a2, 'A on the other node')) === idA, 'A is A on the other node');
  const itemA = conversationWith(a, idB);
  const itemA2 = conversationWith(a2, idB);
  await itemA2.waitFor();
  check((await itemA2.getAttribute('data-pinned')) === 'false', 'not pinned yet');
  await a.getByTestId('pin-toggle').click();
  await until('A\'s button says Unpin', async () => (await textOf(a.getByTestId('pin-toggle'))) === 'Unpin');
  await a.getByTestId('mute-toggle').click();
  await until('A\'s button says Unmute', async () => (await textOf(a.getByTestId('mute-toggle'))) === 'Unmute');
  check((await itemA.getAttribute('data-pinned')) === 'true', 'A\'s item is pinned');
  check((await itemA.getAttribute('data-muted')) === 'true', 'A\'s item is muted');
  await until('A\'s other page hears of both', async () =>
    (await itemA2.getAttribute('data-pinned')) === 'true' && (await itemA2.getAttribute('data-muted')) === 'true');
  check((await conversationWith(b, idA).getAttribute('data-pinned')) === 'false', 'B\'s item is not pinned');
  await shot(a2, '08-a-pinned-and-muted-on-the-other-node');
  await itemA2.click();
  await until('the other page offers Unpin', async () => (await textOf(a2.getByTestId('pin-toggle'))) === 'Unpin');
  await a2.getByTestId('pin-toggle').click();
  await until('A\'s first page hears of the unpin', async () => (await itemA.getAttribute('data-pinned')) === 'false');
  check((await textOf(a.getByTestId('pin-toggle'))) === 'Pin', 'A\'s open chat offers Pin again');
  await a2.close();

  step('an admin sees the settings and both nodes, and turns a setting off');
  const contextC = await browser.newContext({ viewport });
  const admin = await openPage(contextC, A_URL, 'admin');
  await signIn(admin, 'admin', { admin: true });
  await admin.getByTestId('admin-panel').waitFor();
  await until('typing indicators show as on', () => admin.getByTestId('setting-enable_typing_indicator').isChecked());
  await until('both nodes listed with their connections (A, B, admin)', async () => {
    const rows = await admin.getByTestId('node-row').all();
    if (rows.length !== 2) return false;
    const counts = await admin.getByTestId('node-connections').allTextContents();
    return counts.map(Number).reduce((x, y) => x + y, 0) >= 3;
  });
  const block = admin.getByTestId('setting-enable_block_feature');
  check(await block.isChecked(), 'blocking is on by default');
  const saved = admin.waitForResponse((r) =>
    r.url().endsWith('/api/admin/settings/enable_block_feature') && r.request().method() === 'POST');
  await block.click();
  check((await saved).status() === 200, 'the setting was saved');
  await until('the panel shows it off after reloading', async () =>
    !(await admin.getByTestId('setting-enable_block_feature').isChecked()));
  await shot(admin, '08-admin-panel');

  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    const shown = await page.locator('.error').allTextContents();
    for (const text of shown.filter((t) => t.trim())) pageErrors.push(`${name} showed: ${text}`);
  }
  check(pageErrors.length === 0, `no errors in the client: ${pageErrors.join('; ')}`);
}

mkdirSync(SHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
try {
  await run(browser);
  step('e2e: all steps passed');
} catch (e) {
  console.error(`e2e: FAILED: ${e.stack || e}`);
  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    await shot(page, `failure-${name.replace(/\s/g, '-')}`).catch(() => {});
    const shown = await page.evaluate(() => [...document.querySelectorAll('.error, .notice')]
      .filter((e) => e.textContent).map((e) => `${e.id}: ${e.textContent}`)).catch(() => []);
    logs.push(...shown.map((text) => `${name} shows ${text}`));
  }
  console.error(['--- page console', ...logs, '--- page errors', ...pageErrors].join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
