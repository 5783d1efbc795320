// End-to-end run of the web UI in Debian's Chromium (playwright-core, no browser download).
// Started by tests/test_ui_e2e.py, which runs the real app and feeds it data; settings via env:
//   LAAS_URL, LAAS_PASSWORD, LAAS_ADMIN, LAAS_VIEWER, LAAS_MEMBER (acme), LAAS_MULTI (member of
//   acme and viewer of beta), LAAS_BETA (emails), LAAS_MARKER (text only tenant acme's logs
//   hold), LAAS_BETA_MARKER (only beta's), LAAS_API_MARKER and LAAS_API_COUNT (acme's logs sent
//   through the ingest API), LAAS_LIVE_MARKER (the live event), LAAS_ALERT_ID (the alert the
//   test injects), LAAS_WEBHOOK_URL (the test's receiver), LAAS_SCREENSHOTS (folder).
// Prints `STEP <name>` as it goes, `LIVE_READY` when the test should send the live event,
// `ALERT_READY` when it should publish the alert and `WEBHOOK_READY <secret>` when beta's
// webhook exists; then reads `WEBHOOK_DELIVERED <alert id>` from stdin. Exits non-zero with the
// failing step on any error.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is required`);
  return value;
};
const URL_ = env('LAAS_URL');
const PASSWORD = env('LAAS_PASSWORD');
const SHOTS = env('LAAS_SCREENSHOTS');
const MARKER = env('LAAS_MARKER');
const BETA_MARKER = env('LAAS_BETA_MARKER');
const LIVE_MARKER = env('LAAS_LIVE_MARKER');
const ALERT_ID = env('LAAS_ALERT_ID');
const ALERT_OCCURRENCES = env('LAAS_ALERT_OCCURRENCES');
const ALERT_DETECTOR = env('LAAS_ALERT_DETECTOR');
const API_MARKER = env('LAAS_API_MARKER');
const API_COUNT = Number(env('LAAS_API_COUNT'));
const MEMBER = env('LAAS_MEMBER');
mkdirSync(SHOTS, { recursive: true });
for (const name of readdirSync(SHOTS)) if (name.endsWith('.png')) rmSync(`${SHOTS}/${name}`);

let current = 'start';
const step = (name) => {
  current = name;
  console.log(`STEP ${name}`);
};
const check = (ok, message) => {
  if (!ok) throw new Error(message);
};

// Lines the test writes to our stdin (answers to the READY lines).
const received = [];
let wake = () => {};
const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  received.push(line);
  wake();
});
async function fromTest(prefix, timeoutMs = 150_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const i = received.findIndex((line) => line.startsWith(prefix));
    if (i >= 0) return received.splice(i, 1)[0];
    if (Date.now() > deadline) throw new Error(`the test sent no ${prefix} within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 1000);
    });
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const errors = [];
const pages = [];

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}\n${e.stack}`));
  page.on('dialog', (d) => d.accept());
  pages.push(page);
  return page;
}

async function signIn(page, email) {
  await page.goto(`${URL_}/`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Pages' }).waitFor();
}

async function search(page, q) {
  const box = page.getByRole('combobox', { name: /Query/ });
  await box.fill(q);
  await box.press('Enter');
  await page.waitForURL((u) => (new URL(u).searchParams.get('q') ?? '') === q);
  await page.getByTestId('total').waitFor();
}

const alertItem = (page) => page.locator(`[data-testid=alerts] li[data-alert="${ALERT_ID}"]`);
const rulesPanel = (page) => page.getByTestId('rules');

const shot = (page, name, fullPage = false) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage });

try {
  // --- admin of tenant acme -------------------------------------------------------------
  const page = await newPage();
  step('login page');
  await page.goto(`${URL_}/`);
  await page.getByRole('heading', { name: 'Sign in to LaaS' }).waitFor();
  await shot(page, '01-login');
  step('wrong password is refused in words');
  await page.getByLabel('Email').fill(env('LAAS_ADMIN'));
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').waitFor();
  check((await page.getByRole('alert').innerText()).length > 5, 'login error has no text');
  step('login');
  await signIn(page, env('LAAS_ADMIN'));
  await page.waitForURL(/\/explore/);

  step('explore finds the known logs');
  await search(page, MARKER);
  const total = await page.getByTestId('total').innerText();
  check(/^40 events/.test(total), `expected 40 events, got "${total}"`);
  check((await page.locator('[data-testid=results] mark').count()) > 0, 'matches are not highlighted');
  await page.getByTestId('histogram').locator('.layer rect:not([height="0"])').first().waitFor();
  await shot(page, '02-explore');

  step('logs sent through the ingest API (worker, Elasticsearch) are found');
  await search(page, API_MARKER);
  const apiTotal = await page.getByTestId('total').innerText();
  check(apiTotal.startsWith(`${API_COUNT} events`), `expected ${API_COUNT} events sent through the API, got "${apiTotal}"`);
  await search(page, `${API_MARKER} AND level:error`);
  const apiErrors = await page.getByTestId('total').innerText();
  check(apiErrors.startsWith(`${Math.ceil(API_COUNT / 4)} events`), `the API's error logs: "${apiErrors}"`);
  await page.locator('[data-testid=results] .row .summary').first().click();
  const apiRow = await page.getByTestId('results').innerText();
  check(apiRow.includes('api-gateway') && apiRow.includes('/orders') && apiRow.includes(API_MARKER), `an ingested row lacks its service, attribute or message: ${apiRow.slice(0, 400)}`);
  await shot(page, '18-ingested');
  await search(page, MARKER);

  step('field completion and syntax error at its position');
  const box = page.getByRole('combobox', { name: /Query/ });
  await box.fill('serv');
  await page.getByRole('option', { name: 'service:' }).waitFor();
  await box.press('Tab');
  check((await box.inputValue()) === 'service:', `completion gave "${await box.inputValue()}"`);
  await box.fill('service:api AND (');
  await box.press('Enter');
  await page.locator('#query-error').waitFor();
  check(/At position \d+/.test(await page.locator('#query-error').innerText()), 'syntax error has no position');
  await shot(page, '03-syntax-error');
  await search(page, MARKER);

  step('slash focuses the query, Esc leaves it');
  await page.locator('body').click({ position: { x: 5, y: 300 } });
  await page.keyboard.press('/');
  check(await box.evaluate((el) => el === document.activeElement), '/ did not focus the query');
  await page.keyboard.press('Escape');

  step('zoom the histogram');
  const unzoomed = await page.getByTestId('total').innerText();
  const chart = await page.getByTestId('histogram').boundingBox();
  const y = chart.y + chart.height / 2;
  await page.mouse.move(chart.x + chart.width * 0.45, y);
  await page.mouse.down();
  await page.mouse.move(chart.x + chart.width * 0.7, y, { steps: 8 });
  await page.mouse.move(chart.x + chart.width * 0.99, y, { steps: 8 });
  await page.mouse.up();
  await page.waitForURL((u) => new URL(u).searchParams.has('until'));
  // The old total stays on screen until the zoomed search answers: wait for it to change.
  await page.waitForFunction((before) => {
    const total = document.querySelector('[data-testid=total]')?.textContent ?? before;
    return total !== before;
  }, unzoomed);
  const zoomed = await page.getByTestId('total').innerText();
  const zoomedCount = Number(zoomed.split(' ')[0].replace(/,/g, ''));
  check(zoomedCount > 0 && zoomedCount < 40, `zoomed view should hold part of the 40 events, got "${zoomed}"`);
  await shot(page, '04-zoomed');

  step('the URL reproduces the view');
  const link = page.url();
  const other = await newPage();
  await signIn(other, env('LAAS_ADMIN'));
  await other.goto(link);
  await other.getByTestId('total').waitFor();
  check((await other.getByTestId('total').innerText()) === zoomed, 'a copied link shows another view');
  await other.context().close();

  step('expand a row and open its context');
  await search(page, MARKER);
  await page.locator('[data-testid=results] .row .summary').first().click();
  await page.getByRole('button', { name: 'Show surrounding context' }).click();
  const ctx = page.getByTestId('context');
  await ctx.locator('.ctx-anchor').waitFor();
  const lines = await ctx.locator('li').count();
  check(lines > 1 && (await ctx.locator('.ctx-before, .ctx-after').count()) > 0, `context shows ${lines} lines`);
  check(new URL(page.url()).searchParams.has('context'), 'context is not in the URL');
  await shot(page, '05-context');
  await page.keyboard.press('Escape');
  await ctx.waitFor({ state: 'detached' });

  step('infinite scroll loads the next page by cursor');
  await search(page, '');
  const before = await page.locator('[data-testid=results] .row').count();
  check(/^(More than )?\d+/.test(await page.getByTestId('total').innerText()), 'no total');
  // Scroll to the end until the last page is in: a full last page still has a cursor, so the
  // footer appears only after one more (empty) page (the count of events varies from run to run).
  for (let i = 0; i < 20; i++) {
    await page.getByTestId('results').evaluate((el) => el.scrollTo(0, el.scrollHeight));
    const done = await page
      .waitForFunction(() => /End of results \(\d+\)/.test(document.querySelector('.list-footer')?.textContent ?? ''), null, { timeout: 3_000 })
      .then(() => true, () => false);
    if (done) break;
  }
  await page.waitForFunction(() => /End of results \(\d+\)/.test(document.querySelector('.list-footer')?.textContent ?? ''));
  const footer = await page.locator('.list-footer').innerText();
  check(Number(/\((\d+)\)/.exec(footer)[1]) > 100, `expected more than one page (100), footer "${footer}" (rows rendered before: ${before})`);

  step('live tail shows a new log');
  await page.getByRole('checkbox', { name: 'Live' }).check();
  await page.getByText('Live: new events appear at the top').waitFor();
  console.log('LIVE_READY');
  await page.locator('[data-testid=results]').getByText(LIVE_MARKER).waitFor({ timeout: 30_000 });
  await shot(page, '06-live');
  step('pause holds events');
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.getByText(/Paused — \d+ new events held/).waitFor();
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.getByRole('checkbox', { name: 'Live' }).uncheck();

  step('sources');
  await page.getByRole('link', { name: 'Sources' }).click();
  await page.getByTestId('sources').waitFor();
  check((await page.locator('[data-testid=sources] tbody tr').count()) >= 2, 'sources table has fewer than 2 rows');
  check((await page.locator('tr.silent').count()) >= 1, 'the silent source is not highlighted');
  await shot(page, '07-sources');

  step('patterns shows the templates of the indexed events');
  await page.getByRole('link', { name: 'Patterns' }).click();
  await page.getByTestId('patterns').waitFor();
  const checkoutRow = page.locator('[data-testid=patterns] tr', { hasText: `checkout step <NUM> ${MARKER}` });
  await checkoutRow.waitFor();
  check((await checkoutRow.locator('td').first().innerText()) === '40', `checkout template count: ${await checkoutRow.locator('td').first().innerText()}`);
  check((await checkoutRow.locator('.badge.new').count()) === 1, 'the checkout template (first seen 10 minutes ago) is not marked new');
  const paymentRow = page.locator('[data-testid=patterns] tr', { hasText: 'payment authorised' });
  check((await paymentRow.locator('td').first().innerText()) === '150', 'payments template count in the last hour is not 150');
  check((await paymentRow.locator('.badge.new').count()) === 0, 'the payments template (first seen 3 hours ago) is marked new');
  check((await checkoutRow.locator('svg.sparkline path.spark-line').count()) === 1, 'no trend sparkline');
  check(!(await page.getByTestId('patterns').innerText()).includes(BETA_MARKER), 'acme sees beta templates');
  await checkoutRow.getByRole('button', { name: 'Samples' }).click();
  await checkoutRow.getByRole('list', { name: 'Sample events' }).getByText(MARKER).first().waitFor();
  await shot(page, '12-patterns');
  step('a template opens Explore filtered by it, keeping the range');
  const templateId = await checkoutRow.getAttribute('data-template');
  await checkoutRow.getByRole('link').click();
  await page.waitForURL((u) => new URL(u).pathname === '/explore' && new URL(u).searchParams.get('q') === `template:${templateId}` && new URL(u).searchParams.get('since') === '1h');
  await page.getByTestId('total').waitFor();
  check((await page.getByTestId('total').innerText()).startsWith('40 events'), `template filter found ${await page.getByTestId('total').innerText()}`);
  await page.goBack();
  await page.getByTestId('patterns').waitFor();

  step('alerts: an injected alert appears live');
  const betaAlerts = await newPage(); // tenant beta watches its own live alerts meanwhile
  await signIn(betaAlerts, env('LAAS_BETA'));
  await betaAlerts.getByRole('link', { name: 'Alerts' }).click();
  await betaAlerts.getByText('Live: new alerts appear at the top').waitFor();
  await page.getByRole('link', { name: 'Alerts' }).click();
  await page.getByText('Live: new alerts appear at the top').waitFor();
  await page.getByText('No alerts in the last 7 days').waitFor();
  console.log('ALERT_READY');
  await alertItem(page).waitFor({ timeout: 30_000 });
  check((await alertItem(page).locator('.badge.status').innerText()).toLowerCase() === 'open', 'the new alert is not open');
  // every firing of the group arrives: the latest evidence and count are shown
  await alertItem(page).locator('.alert-meta', { hasText: `${ALERT_DETECTOR} · ${ALERT_OCCURRENCES}×` }).waitFor({ timeout: 10_000 });
  step('the alert explains itself');
  await alertItem(page).locator('.alert-toggle').click();
  const explanation = alertItem(page).getByTestId('explanation');
  await explanation.waitFor();
  check((await explanation.locator('table.features tbody tr').count()) >= 3, 'no features in the explanation');
  const explained = await explanation.innerText();
  check(/count_error/.test(explained) && /scored this window/.test(explained) && /threshold/.test(explained), `explanation lacks features or score: ${explained.slice(0, 300)}`);
  check(explained.includes('gateway timeout after'), 'explanation shows no sample events');
  step('beta never sees acme alerts, live or stored');
  await betaAlerts.waitForTimeout(500);
  check((await betaAlerts.locator(`[data-alert="${ALERT_ID}"]`).count()) === 0, 'beta sees the acme alert live');
  await betaAlerts.getByText('No alerts in the last 7 days').waitFor();
  await betaAlerts.reload();
  await betaAlerts.getByText('No alerts in the last 7 days').waitFor();
  await betaAlerts.context().close();

  step('rules: API validation error in words, create, edit, delete');
  const rules = rulesPanel(page);
  await rules.getByText('No alert rules yet.').waitFor();
  await rules.getByLabel('Rule name').fill('e2e-errors');
  await rules.getByLabel('Query (events counted)').fill('level:error AND (');
  await rules.getByLabel('Threshold (events)').fill('5');
  await rules.getByRole('button', { name: 'Create rule' }).click();
  const ruleError = rules.getByRole('alert');
  await ruleError.waitFor();
  check(/^The rule was not created: query: .+/.test(await ruleError.innerText()), `rule error: ${await ruleError.innerText()}`);
  check((await rules.getByLabel('Query (events counted)').getAttribute('aria-invalid')) === 'true', 'the query field is not marked invalid');
  await rules.getByLabel('Query (events counted)').fill('service:checkout AND level:error');
  await rules.getByRole('button', { name: 'Create rule' }).click();
  await rules.locator('tr[data-rule="e2e-errors"]').getByText('more than 5 events in 60 s').waitFor();
  await rules.getByRole('button', { name: 'Edit rule e2e-errors' }).click();
  const editForm = rules.getByRole('form', { name: 'Edit rule e2e-errors' });
  await editForm.getByLabel('Threshold (events)').fill('9');
  await editForm.getByRole('button', { name: 'Save rule' }).click();
  await rules.locator('tr[data-rule="e2e-errors"]').getByText('more than 9 events in 60 s').waitFor();
  await rules.getByLabel('Rule name').fill('e2e-temp');
  await rules.getByLabel('Query (events counted)').fill('level:fatal');
  await rules.getByLabel('Threshold (events)').fill('0');
  await rules.getByRole('button', { name: 'Create rule' }).click();
  await rules.locator('tr[data-rule="e2e-temp"]').waitFor();
  await rules.getByRole('button', { name: 'Delete rule e2e-temp' }).click();
  await rules.locator('tr[data-rule="e2e-temp"]').waitFor({ state: 'detached' });
  await shot(page, '13-alerts', true);

  step('acknowledge the alert; it stays acknowledged after a reload');
  await alertItem(page).getByRole('button', { name: /^Acknowledge alert/ }).click();
  await alertItem(page).locator('.badge.status', { hasText: 'acknowledged' }).waitFor();
  await page.reload();
  await alertItem(page).locator('.badge.status', { hasText: 'acknowledged' }).waitFor();
  check((await alertItem(page).getByText(/^Acknowledged by/).count()) === 1, 'no acknowledgement note');
  step("the alert's Explore link shows its events");
  await alertItem(page).locator('.alert-toggle').click();
  await alertItem(page).getByRole('link', { name: 'Open these events in Explore' }).click();
  await page.waitForURL((u) => new URL(u).pathname === '/explore' && new URL(u).searchParams.has('until'));
  await page.getByTestId('total').waitFor();
  const alertTotal = await page.getByTestId('total').innerText();
  check(/^[1-9]\d* events/.test(alertTotal), `the alert's Explore link found "${alertTotal}"`);

  step('create an API key, shown once');
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByLabel('Name').fill('e2e-key');
  await page.getByLabel('Scope').selectOption('ingest');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = await page.getByTestId('new-key').locator('code').innerText();
  check(secret.length > 20, `new key looks wrong: "${secret}"`);
  await page.getByTestId('users').getByRole('cell', { name: env('LAAS_VIEWER'), exact: true }).waitFor();
  await shot(page, '08-settings-admin');
  await page.getByRole('button', { name: 'Done' }).click();
  check((await page.getByText(secret).count()) === 0, 'the key is still shown after Done');
  step('revoke the key');
  await page.getByRole('button', { name: 'Revoke e2e-key' }).click();
  await page.locator('tr[data-key="e2e-key"]').getByText(/^revoked/).waitFor();

  step('an admin demotes a member to viewer; the member loses key management at once');
  const member = await newPage();
  await signIn(member, MEMBER);
  await member.getByRole('link', { name: 'Settings' }).click();
  await member.getByTestId('apikeys').waitFor();
  check((await member.getByTestId('users').count()) === 0, 'a member sees the users');
  const memberRow = page.locator(`[data-testid=users] tr[data-user="${MEMBER}"]`);
  check((await memberRow.getAttribute('data-role')) === 'member', 'the member is not listed as member');
  await page.getByLabel(`Role of ${MEMBER}`).selectOption('viewer');
  await page.getByTestId('users-notice').getByText(`${MEMBER} is now a viewer.`).waitFor();
  await page.locator(`[data-testid=users] tr[data-user="${MEMBER}"][data-role="viewer"]`).waitFor();
  check((await page.getByLabel(`Role of ${MEMBER}`).inputValue()) === 'viewer', 'the role select does not show viewer');
  await shot(page, '19-role-changed');
  // the member's open page still offers the form; the API refuses at once
  await member.getByLabel('Name').fill('after-demotion');
  await member.getByRole('button', { name: 'Create key' }).click();
  const refused = member.getByTestId('apikeys').getByRole('alert');
  await refused.waitFor();
  check(/^Not allowed: /.test(await refused.innerText()), `a demoted member's key creation: "${await refused.innerText()}"`);
  await member.reload();
  await member.getByTestId('viewer-note').waitFor();
  check((await member.getByTestId('apikeys').count()) === 0, 'the demoted member still sees API keys');
  check((await member.getByTestId('who').innerText()).endsWith('(viewer)'), `who: ${await member.getByTestId('who').innerText()}`);
  await shot(member, '20-member-demoted');
  await member.context().close();

  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to LaaS' }).waitFor();
  await page.goto(`${URL_}/settings`);
  await page.getByRole('heading', { name: 'Sign in to LaaS' }).waitFor();
  await page.context().close();

  // --- viewer of tenant acme: no admin settings ------------------------------------------
  step('viewer sees no admin settings');
  const viewer = await newPage();
  await signIn(viewer, env('LAAS_VIEWER'));
  await viewer.getByRole('link', { name: 'Settings' }).click();
  await viewer.getByTestId('viewer-note').waitFor();
  check((await viewer.getByTestId('apikeys').count()) === 0, 'viewer sees API keys');
  check((await viewer.getByTestId('users').count()) === 0, 'viewer sees users');
  check((await viewer.getByTestId('webhooks').count()) === 0, 'viewer sees webhooks');
  await shot(viewer, '09-settings-viewer');
  step('viewer reads alerts and rules but cannot change them');
  await viewer.getByRole('link', { name: 'Alerts' }).click();
  await alertItem(viewer).waitFor();
  await rulesPanel(viewer).locator('tr[data-rule="e2e-errors"]').waitFor();
  await rulesPanel(viewer).getByTestId('rules-readonly').waitFor();
  check((await rulesPanel(viewer).getByRole('button').count()) === 0, 'viewer has buttons in the rules editor');
  check((await rulesPanel(viewer).locator('form').count()) === 0, 'viewer has a rule form');
  check((await alertItem(viewer).getByRole('button', { name: /Acknowledge|Resolve/ }).count()) === 0, 'viewer can acknowledge or resolve');
  await shot(viewer, '14-alerts-viewer', true);
  await viewer.getByRole('link', { name: 'Settings' }).click();
  step('session survives a reload (refresh flow)');
  await viewer.reload();
  await viewer.getByTestId('viewer-note').waitFor();
  await viewer.context().close();

  // --- a user of both tenants: choose one, then switch ----------------------------------
  step('a user of two tenants chooses one at sign-in');
  const multi = await newPage();
  await multi.goto(`${URL_}/`);
  await multi.getByLabel('Email').fill(env('LAAS_MULTI'));
  await multi.getByLabel('Password').fill(PASSWORD);
  await multi.getByRole('button', { name: 'Sign in' }).click();
  const choice = multi.getByLabel('Tenant', { exact: true });
  await choice.waitFor();
  const offered = await choice.locator('option').allInnerTexts();
  check(offered.length === 2 && offered.some((o) => o.includes('acme') && o.includes('member')) && offered.some((o) => o.includes('beta') && o.includes('viewer')), `tenant choice: ${offered.join(' | ')}`);
  await choice.selectOption('acme');
  await multi.getByRole('button', { name: 'Continue' }).click();
  await multi.getByRole('navigation', { name: 'Pages' }).waitFor();
  check(/· acme \(member\)$/.test(await multi.getByTestId('who').innerText()), `who after choosing acme: ${await multi.getByTestId('who').innerText()}`);
  await search(multi, MARKER);
  check((await multi.getByTestId('total').innerText()).startsWith('40 events'), 'acme chosen, but its logs are not found');
  await search(multi, BETA_MARKER);
  check((await multi.getByTestId('total').innerText()).startsWith('0 events'), 'acme chosen, yet beta logs are found');
  await shot(multi, '21-tenant-chosen');
  step('switch tenant: beta data, none of acme');
  await multi.getByRole('button', { name: 'Switch tenant' }).click();
  await multi.getByRole('heading', { name: 'Switch tenant' }).waitFor();
  await multi.getByLabel('Password').fill(PASSWORD);
  await multi.getByLabel('Tenant', { exact: true }).selectOption('beta');
  await multi.getByRole('button', { name: 'Continue' }).click();
  await multi.getByRole('navigation', { name: 'Pages' }).waitFor();
  check(/· beta \(viewer\)$/.test(await multi.getByTestId('who').innerText()), `who after switching: ${await multi.getByTestId('who').innerText()}`);
  await search(multi, BETA_MARKER);
  check((await multi.getByTestId('total').innerText()).startsWith('20 events'), `beta's logs after switching: ${await multi.getByTestId('total').innerText()}`);
  await search(multi, MARKER);
  check((await multi.getByTestId('total').innerText()).startsWith('0 events'), 'after switching to beta, acme logs are found');
  await search(multi, '');
  await multi.locator('[data-testid=results] .row').first().waitFor();
  const switched = await multi.getByTestId('results').innerText();
  check(switched.includes(BETA_MARKER) && !switched.includes(MARKER) && !switched.includes(API_MARKER), 'after switching, the list shows acme logs');
  await shot(multi, '22-tenant-switched');
  await multi.getByRole('link', { name: 'Settings' }).click();
  await multi.getByTestId('viewer-note').waitFor();
  check((await multi.getByRole('heading', { name: 'Tenant', exact: true }).locator('..').innerText()).includes('beta'), 'Settings does not name tenant beta');
  await multi.context().close();

  // --- admin of tenant beta: never sees acme's data --------------------------------------
  step('tenant beta never shows tenant acme data');
  const beta = await newPage();
  await signIn(beta, env('LAAS_BETA'));
  await search(beta, MARKER);
  check((await beta.getByTestId('total').innerText()).startsWith('0 events'), 'beta finds acme logs');
  await search(beta, '');
  await beta.locator('[data-testid=results] .row').first().waitFor();
  const text = await beta.getByTestId('results').innerText();
  check(text.includes(BETA_MARKER) && !text.includes(MARKER), 'beta sees acme logs in its list');
  await beta.getByRole('checkbox', { name: 'Live' }).check();
  await beta.getByText('Live: new events appear at the top').waitFor();
  await beta.waitForTimeout(1500);
  check(!(await beta.locator('body').innerText()).includes(LIVE_MARKER), 'beta sees acme live log');
  await beta.getByRole('link', { name: 'Sources' }).click();
  await beta.getByTestId('sources').waitFor();
  check(!(await beta.getByTestId('sources').innerText()).includes('checkout'), 'beta sees acme sources');
  await shot(beta, '10-tenant-beta');
  await beta.getByRole('link', { name: 'Patterns' }).click();
  await beta.getByTestId('patterns').getByText('beta job').first().waitFor();
  const betaPatterns = await beta.getByTestId('patterns').innerText();
  check(!betaPatterns.includes('checkout') && !betaPatterns.includes('payment') && !betaPatterns.includes(MARKER), 'beta sees acme patterns');
  await shot(beta, '15-patterns-beta');

  step('webhooks: a URL the API refuses is explained, then one is created with its secret shown once');
  await beta.getByRole('link', { name: 'Alerts' }).click();
  const hooks = beta.getByTestId('webhooks');
  await hooks.getByText(/^No webhooks yet/).waitFor();
  await hooks.getByLabel('Webhook name').fill('e2e-hook');
  await hooks.getByLabel('URL').fill('ftp://hooks.example.com/laas');
  await hooks.getByRole('button', { name: 'Create webhook' }).click();
  const hookError = hooks.getByRole('alert');
  await hookError.waitFor();
  check(/^The webhook was not created: url must be an http/.test(await hookError.innerText()), `webhook error: ${await hookError.innerText()}`);
  check((await hooks.getByLabel('URL').getAttribute('aria-invalid')) === 'true', 'the URL field is not marked invalid');
  await hooks.getByLabel('URL').fill(env('LAAS_WEBHOOK_URL'));
  await hooks.getByRole('button', { name: 'Create webhook' }).click();
  const hookSecret = await hooks.getByTestId('new-webhook').locator('code').innerText();
  check(/^whsec_[A-Za-z0-9+/]{43}=$/.test(hookSecret), `the webhook secret looks wrong: "${hookSecret}"`);
  await hooks.locator('tr[data-webhook="e2e-hook"]').getByText('enabled').waitFor();
  await shot(beta, '23-webhooks', true);
  await hooks.getByTestId('new-webhook').getByRole('button', { name: 'Done' }).click();
  check((await beta.getByText(hookSecret).count()) === 0, 'the webhook secret is still shown after Done');
  console.log(`WEBHOOK_READY ${hookSecret}`);
  step('a rule alert from the worker is delivered: the delivery log and the alert list show it');
  const delivered = (await fromTest('WEBHOOK_DELIVERED ')).split(' ')[1];
  await hooks.getByRole('button', { name: 'Delivery log of e2e-hook' }).click();
  const delivery = hooks.locator(`[data-testid=deliveries] tr[data-delivery="${delivered}"]`).first();
  await delivery.waitFor();
  check((await delivery.innerText()).includes('delivered (HTTP 200)'), `delivery row: ${await delivery.innerText()}`);
  await beta.locator(`[data-testid=alerts] li[data-alert="${delivered}"]`).getByText(/beta-errors/).waitFor();
  await shot(beta, '23-webhooks', true);
  step('delete the webhook');
  await hooks.getByRole('button', { name: 'Delete webhook e2e-hook' }).click();
  await hooks.locator('tr[data-webhook="e2e-hook"]').waitFor({ state: 'detached' });
  await hooks.getByText(/^No webhooks yet/).waitFor();
  await beta.context().close();

  // --- dark theme -----------------------------------------------------------------------
  step('dark theme');
  const dark = await newPage();
  await signIn(dark, env('LAAS_ADMIN'));
  await dark.getByRole('button', { name: /Use the dark theme/ }).click();
  await search(dark, MARKER);
  await dark.getByTestId('histogram').locator('.layer rect:not([height="0"])').first().waitFor();
  await shot(dark, '11-explore-dark');
  await dark.getByRole('link', { name: 'Alerts' }).click();
  await alertItem(dark).locator('.alert-toggle').click();
  await alertItem(dark).getByTestId('explanation').waitFor();
  await shot(dark, '16-alerts-dark');
  await dark.getByTestId('webhooks').getByText(/^No webhooks yet/).waitFor();
  await dark.getByTestId('webhooks').scrollIntoViewIfNeeded();
  await shot(dark, '24-webhooks-dark');
  step('resolve the alert; the status filter finds it');
  await alertItem(dark).getByRole('button', { name: /^Resolve alert/ }).click();
  await alertItem(dark).locator('.badge.status', { hasText: 'resolved' }).waitFor();
  await dark.getByRole('group', { name: 'Show alerts by status' }).getByRole('button', { name: 'Open' }).click();
  await dark.getByText('No open alerts.').waitFor();
  await dark.getByRole('group', { name: 'Show alerts by status' }).getByRole('button', { name: 'Resolved' }).click();
  await alertItem(dark).waitFor();
  await dark.getByRole('link', { name: 'Patterns' }).click();
  await dark.getByTestId('patterns').waitFor();
  await shot(dark, '17-patterns-dark');
  await dark.context().close();

  check(errors.length === 0, errors.join('\n'));
  console.log('OK');
} catch (exc) {
  console.error(`FAILED at step "${current}": ${exc.message}`);
  if (errors.length) console.error(errors.join('\n'));
  for (const [i, p] of pages.entries()) {
    if (!p.isClosed()) await p.screenshot({ path: `${SHOTS}/failed-${i}.png` }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  input.close();
  await browser.close();
}
