// kubegate's web page: sign in, the environments you may reach and the kubeconfig download, and
// the admin's screens. Plain JavaScript without a build step; nothing is loaded from elsewhere.
// Every value from the server reaches the page as text (textContent), never as HTML.
'use strict';

(() => {
  // The session token lives in sessionStorage, not in a cookie: the API takes bearer tokens only,
  // so there is no ambient credential another site could ride on (no CSRF surface), and the
  // token is gone when the tab closes.
  const TOKEN_KEY = 'kubegate.session';

  const EXPIRY_CHOICES = [
    ['24h', '1 day'],
    ['168h', '7 days'],
    ['720h', '30 days'],
    ['8760h', '1 year'],
    ['0', 'Never'],
  ];
  const ROLES = ['environment-admin', 'operator', 'helpdesk', 'standard', 'read-only'];
  const SCOPED_ROLES = new Set(['standard', 'read-only']);
  const AUDIT_KINDS = [
    'request',
    'session',
    'signin',
    'token',
    'settings',
    'access',
    'environment',
    'kubeconfig',
    'user',
    'team',
    'key',
  ];

  const app = { token: sessionStorage.getItem(TOKEN_KEY), me: null, shown: false };

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function errorOf(resp) {
    let message = '';
    try {
      const body = await resp.json();
      if (body && typeof body.message === 'string') message = body.message;
    } catch (_) {
      // Not JSON: fall back to the status line.
    }
    if (!message) message = `the server answered ${resp.status} ${resp.statusText || ''}`.trim();
    const retry = parseInt(resp.headers.get('Retry-After') || '', 10);
    return new ApiError(resp.status, message, Number.isFinite(retry) ? retry : null);
  }

  async function request(method, path, { body, accept } = {}) {
    const headers = { Accept: accept || 'application/json' };
    if (app.token) headers.Authorization = `Bearer ${app.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (_) {
      throw new ApiError(0, 'cannot reach kubegate; check the connection and try again');
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp;
  }

  async function api(method, path, body) {
    const resp = await request(method, path, { body });
    const text = resp.status === 204 ? '' : await resp.text();
    return text ? JSON.parse(text) : null;
  }

  // ---------------------------------------------------------------- DOM helpers

  const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'indeterminate', 'hidden']);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  let uid = 0;
  const newId = (prefix) => `${prefix}-${++uid}`;

  /// A labelled form field: `control` gets an id and the label points at it.
  function field(label, control, hint) {
    if (!control.id) control.id = newId('f');
    const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
    if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
    return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
  }

  function checkbox(label, input) {
    if (!input.id) input.id = newId('c');
    return h('div', { class: 'check' }, input, h('label', { for: input.id }, label));
  }

  function select(options, value, attrs) {
    return h(
      'select',
      attrs || {},
      options.map(([v, label]) => h('option', { value: String(v), selected: String(v) === String(value) }, label)),
    );
  }

  /// An error line (role=alert) and a status line (role=status) for one form or action.
  function feedback() {
    const error = h('p', { class: 'error', role: 'alert' });
    const status = h('p', { class: 'status', role: 'status' });
    return {
      nodes: h('div', { class: 'feedback' }, error, status),
      errorEl: error,
      statusEl: status,
      error: (m) => {
        status.textContent = '';
        error.textContent = m;
      },
      ok: (m) => {
        error.textContent = '';
        status.textContent = m;
      },
      clear: () => {
        error.textContent = '';
        status.textContent = '';
      },
    };
  }

  /// Runs `action` with `button` disabled; the error goes to `fb`. Inputs are never cleared on
  /// failure: nothing typed is lost.
  async function busy(button, fb, action) {
    if (button.disabled) return undefined;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    fb.clear();
    try {
      return await action();
    } catch (e) {
      fb.error(e.message || String(e));
      return undefined;
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  function table(columns, rows, { caption, empty, rowAttrs } = {}) {
    if (rows.length === 0) return h('p', { class: 'muted empty' }, empty || 'Nothing here yet.');
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        caption ? h('caption', { class: 'sr-only' }, caption) : null,
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
        h(
          'tbody',
          {},
          rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h('td', { class: c.class }, c.cell(r))))),
        ),
      ),
    );
  }

  function time(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return h(
      'time',
      { datetime: iso, title: iso },
      d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }),
    );
  }

  function badge(text, kind) {
    return h('span', { class: `badge ${kind || ''}` }, text);
  }

  function splitList(text) {
    return text
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean);
  }

  const isAdmin = () => app.me && app.me.role === 'admin';

  /// Focus stays inside a modal dialog: Tab from the last control goes to the first, and back.
  function trapFocus(dialog) {
    dialog.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Tab') return;
      const focusable = [...dialog.querySelectorAll('button, input, select, textarea, a[href]')].filter(
        (el) => !el.disabled && el.offsetParent !== null,
      );
      if (focusable.length === 0) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (ev.shiftKey && document.activeElement === first) {
        ev.preventDefault();
        last.focus();
      } else if (!ev.shiftKey && document.activeElement === last) {
        ev.preventDefault();
        first.focus();
      }
    });
  }

  /// A modal dialog; `build(dialog)` fills it. Escape closes it (the browser's own `cancel`),
  /// and focus returns to `opener`.
  function modal(id, titleText, opener, build) {
    const title = h('h2', { id: `${id}-title` }, titleText);
    const dialog = h('dialog', { id, class: 'dialog', 'aria-labelledby': title.id }, title);
    build(dialog);
    trapFocus(dialog);
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    return dialog;
  }

  /// Asks before something that cannot be undone; resolves to true when confirmed.
  function confirmAction(message, actionLabel, opener) {
    return new Promise((resolve) => {
      let confirmed = false;
      const dialog = modal('confirm-dialog', 'Are you sure?', opener, (d) => {
        const ok = h('button', { type: 'button', class: 'danger', id: 'confirm-ok' }, actionLabel);
        const cancel = h('button', { type: 'button', id: 'confirm-cancel' }, 'Cancel');
        ok.addEventListener('click', () => {
          confirmed = true;
          d.close();
        });
        cancel.addEventListener('click', () => d.close());
        d.append(h('p', {}, message), h('div', { class: 'actions' }, cancel, ok));
      });
      dialog.addEventListener('close', () => resolve(confirmed));
      const cancelButton = dialog.querySelector('#confirm-cancel');
      if (cancelButton) cancelButton.focus();
    });
  }

  // ---------------------------------------------------------------- session and navigation

  function signOut(notice) {
    sessionStorage.removeItem(TOKEN_KEY);
    app.token = null;
    app.me = null;
    renderSignIn(notice);
  }

  const SCREENS = {
    '': { title: 'Your environments', nav: 'Home', render: renderHome },
    settings: { title: 'Settings', nav: 'Settings', admin: true, render: renderSettings },
    tokens: { title: 'Kubeconfig tokens', nav: 'Kubeconfig tokens', admin: true, render: renderTokens },
    environments: { title: 'Environments', nav: 'Environments', admin: true, render: renderEnvironments },
    users: { title: 'Users and teams', nav: 'Users & teams', admin: true, render: renderUsers },
    audit: { title: 'Audit', nav: 'Audit', admin: true, render: renderAudit },
  };

  /// `#/tokens?user=3` → ['tokens', URLSearchParams('user=3')].
  function currentRoute() {
    // Only `#/…` names a screen; any other fragment (`#main`) leaves the home screen.
    const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
    const [path, query] = raw.split('?');
    return [path.replace(/\/+$/, ''), new URLSearchParams(query || '')];
  }

  function renderChrome(key) {
    const topbar = document.getElementById('topbar');
    topbar.hidden = false;
    document
      .getElementById('who')
      .replaceChildren(
        h('span', {}, h('span', { class: 'muted' }, 'Signed in as '), app.me.username, isAdmin() ? [' ', badge('admin', 'role')] : null),
      );
    const nav = document.getElementById('nav');
    const links = Object.entries(SCREENS)
      .filter(([, s]) => !s.admin || isAdmin())
      .map(([k, s]) => h('a', { href: `#/${k}`, 'aria-current': k === key ? 'page' : false }, s.nav));
    nav.replaceChildren(...links);
  }

  async function show() {
    if (!app.token) {
      renderSignIn();
      return;
    }
    const main = document.getElementById('main');
    if (!app.me) {
      try {
        app.me = await api('GET', '/api/users/me');
      } catch (e) {
        if (e.status === 401) {
          signOut('Your session has ended; sign in again.');
        } else {
          main.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message), retryButton());
        }
        return;
      }
    }
    const [key, params] = currentRoute();
    const screen = SCREENS[key];
    renderChrome(key);
    const heading = h('h1', { tabindex: '-1' }, screen ? screen.title : 'Not found');
    const view = h('section', { class: 'view', 'aria-labelledby': newId('h') }, heading);
    heading.id = view.getAttribute('aria-labelledby');
    main.replaceChildren(view);
    document.title = `${screen ? screen.title : 'Not found'} · kubegate`;
    // Moving focus to the new heading tells screen readers the screen changed.
    if (app.shown) heading.focus();
    app.shown = true;
    if (!screen) {
      view.append(h('p', {}, 'There is no such screen. ', h('a', { href: '#/' }, 'Go to your environments.')));
      return;
    }
    if (screen.admin && !isAdmin()) {
      view.append(h('p', { class: 'error', id: 'admin-only' }, 'This screen is for administrators.'));
      return;
    }
    try {
      await screen.render(view, params);
    } catch (e) {
      if (e.status === 401) {
        signOut('Your session has ended; sign in again.');
        return;
      }
      view.append(h('p', { class: 'error', role: 'alert' }, e.message || String(e)), retryButton());
    }
  }

  function retryButton() {
    return h('button', { type: 'button', onclick: () => show() }, 'Try again');
  }

  // ---------------------------------------------------------------- sign in

  function renderSignIn(notice) {
    document.getElementById('topbar').hidden = true;
    document.title = 'Sign in · kubegate';
    const fb = feedback();
    fb.errorEl.id = 'signin-error';
    const username = h('input', {
      name: 'username',
      id: 'username',
      autocomplete: 'username',
      autocapitalize: 'none',
      spellcheck: 'false',
      required: true,
    });
    const password = h('input', {
      name: 'password',
      id: 'password',
      type: 'password',
      autocomplete: 'current-password',
      required: true,
    });
    const submit = h('button', { type: 'submit', class: 'primary', id: 'sign-in' }, 'Sign in');
    const form = h(
      'form',
      { class: 'card signin', 'aria-labelledby': 'signin-title', novalidate: true },
      h('div', { class: 'brand big' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 40, height: 40 }), 'kubegate'),
      h('h1', { id: 'signin-title' }, 'Sign in'),
      notice ? h('p', { class: 'notice' }, notice) : null,
      field('User name', username),
      field('Password', password),
      fb.nodes,
      h('div', { class: 'actions' }, submit),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!username.value || !password.value) {
        fb.error('Enter your user name and password.');
        (username.value ? password : username).focus();
        return;
      }
      // Failures show the server's own words: "invalid username or password", "this account is
      // disabled", or when throttled "too many failed sign-ins; try again in N seconds".
      const result = await busy(submit, fb, () =>
        api('POST', '/api/auth', { username: username.value, password: password.value }),
      );
      if (result && result.jwt) {
        app.token = result.jwt;
        sessionStorage.setItem(TOKEN_KEY, result.jwt);
        app.me = null;
        app.shown = false;
        await show();
      } else {
        password.focus();
        password.select();
      }
    });
    document.getElementById('main').replaceChildren(h('div', { class: 'signin-wrap' }, form));
    username.focus();
  }

  // ---------------------------------------------------------------- home

  const kubernetesUrl = (id) => `${location.origin}/api/endpoints/${id}/kubernetes`;

  function namespacesOf(env) {
    if (!SCOPED_ROLES.has(env.role)) return h('span', { class: 'muted' }, 'all');
    return env.namespaces.length ? env.namespaces.map((n) => h('code', { class: 'ns' }, n)) : '—';
  }

  async function renderHome(view) {
    const envs = await api('GET', '/api/endpoints');
    let refreshMine = async () => {};
    const fb = feedback();
    fb.statusEl.id = 'home-status';
    const toolbar = h('div', { class: 'toolbar' });
    if (location.protocol === 'https:') {
      const button = h(
        'button',
        { type: 'button', class: 'primary', id: 'kubeconfig-button', 'aria-haspopup': 'dialog', disabled: envs.length === 0 },
        'Kubeconfig',
      );
      button.addEventListener('click', () =>
        openKubeconfigDialog(envs, button, (name) => {
          fb.ok(`Saved ${name}.`);
          // The new file's token joins the list below.
          refreshMine().catch((e) => fb.error(e.message));
        }),
      );
      toolbar.append(
        button,
        h('p', { class: 'hint' }, 'Download a kubeconfig file for kubectl, Helm or any other Kubernetes tool.'),
      );
    } else {
      toolbar.append(
        h('p', { class: 'notice', id: 'https-only' }, 'The kubeconfig download is offered only over HTTPS. Open this page with https://.'),
      );
    }
    view.append(
      h(
        'p',
        { class: 'lead' },
        envs.length
          ? 'The environments you may reach, with your role in each.'
          : 'You have no environments yet: ask an administrator for access.',
      ),
      toolbar,
      fb.nodes,
      table(
        [
          { label: 'Name', cell: (e) => h('span', { class: 'env-name' }, e.name) },
          { label: 'API URL', cell: (e) => h('code', { class: 'url' }, kubernetesUrl(e.id)) },
          { label: 'Your role', cell: (e) => badge(e.role, 'role') },
          { label: 'Namespaces', cell: namespacesOf },
        ],
        envs,
        { caption: 'Your environments', empty: 'No environments.', rowAttrs: (e) => ({ dataset: { envId: e.id } }) },
      ),
    );
    const mine = h('section', { class: 'panel', 'aria-labelledby': 'mine-title' });
    view.append(mine);
    refreshMine = await renderOwnTokens(mine, envs);
  }

  /// The user's own kubeconfig files on the home screen; returns how to refresh them.
  async function renderOwnTokens(section, envs) {
    const names = new Map(envs.map((e) => [e.id, e.name]));
    const fb = feedback();
    const list = h('div');
    section.replaceChildren(
      h('h2', { id: 'mine-title' }, 'Your kubeconfig files'),
      h('p', { class: 'hint' }, 'Each download holds its own token. Revoke one you no longer use or may have lost.'),
      fb.nodes,
      list,
    );
    const refresh = async () => {
      const tokens = await api('GET', '/api/kubeconfig-tokens');
      list.replaceChildren(tokenTable(tokens, names, fb, refresh, { showUser: false }));
    };
    await refresh();
    return refresh;
  }

  function openKubeconfigDialog(envs, opener, onSaved) {
    modal('kubeconfig-dialog', 'Download kubeconfig', opener, (dialog) => {
      const fb = feedback();
      fb.errorEl.id = 'kc-error';
      const all = h('input', { type: 'checkbox', id: 'kc-all' });
      const boxes = envs.map((e) => h('input', { type: 'checkbox', name: 'environment', value: String(e.id), id: `kc-env-${e.id}` }));
      const sync = () => {
        const n = boxes.filter((b) => b.checked).length;
        all.checked = n === boxes.length && n > 0;
        all.indeterminate = n > 0 && n < boxes.length;
      };
      all.addEventListener('change', () => {
        for (const b of boxes) b.checked = all.checked;
        sync();
      });
      for (const b of boxes) b.addEventListener('change', sync);
      const expiry = h('p', { id: 'kc-expiry', class: 'expiry' }, 'Looking up the expiry…');
      const download = h('button', { type: 'submit', class: 'primary', id: 'kc-download' }, 'Download File');
      const cancel = h('button', { type: 'button', id: 'kc-cancel' }, 'Cancel');
      cancel.addEventListener('click', () => dialog.close());
      const form = h(
        'form',
        { id: 'kc-form' },
        h('p', {}, 'Choose the environments to put in the file. Each becomes a context.'),
        h(
          'fieldset',
          {},
          h('legend', { class: 'sr-only' }, 'Environments'),
          checkbox('Select all', all),
          h(
            'ul',
            { class: 'env-list', id: 'kc-list' },
            envs.map((e, i) =>
              h(
                'li',
                {},
                boxes[i],
                h(
                  'label',
                  { for: boxes[i].id },
                  h('span', { class: 'env-name' }, e.name),
                  h('span', { class: 'muted' }, ` ${e.role}${SCOPED_ROLES.has(e.role) ? ` · ${e.namespaces.join(', ')}` : ''}`),
                ),
              ),
            ),
          ),
        ),
        expiry,
        fb.nodes,
        h('div', { class: 'actions' }, cancel, download),
      );
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const ids = boxes.filter((b) => b.checked).map((b) => Number(b.value));
        if (ids.length === 0) {
          fb.error('Choose at least one environment.');
          (boxes[0] || all).focus();
          return;
        }
        const saved = await busy(download, fb, () => downloadKubeconfig(ids));
        if (saved) {
          dialog.close();
          onSaved(saved);
        }
      });
      dialog.append(form);
      api('GET', '/api/settings/public').then(
        (s) => {
          expiry.textContent = `This kubeconfig ${s.kubeconfigExpiryDescription}.`;
        },
        (e) => {
          expiry.textContent = `The expiry could not be read: ${e.message}`;
        },
      );
      setTimeout(() => (boxes[0] || all).focus(), 0);
    });
  }

  /// The file name of a `Content-Disposition` header (`filename*` first, as RFC 6266 says).
  function fileName(disposition) {
    if (!disposition) return null;
    const extended = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
    if (extended) {
      try {
        return decodeURIComponent(extended[1].trim());
      } catch (_) {
        // Malformed: use the plain form.
      }
    }
    const plain = /filename\s*=\s*"([^"]*)"/i.exec(disposition);
    return plain ? plain[1] : null;
  }

  async function downloadKubeconfig(ids) {
    const query = encodeURIComponent(JSON.stringify(ids));
    const resp = await request('GET', `/api/kubernetes/config?ids=${query}`, { accept: 'text/yaml' });
    const blob = await resp.blob();
    const name = (fileName(resp.headers.get('Content-Disposition')) || `${app.me.username}-kubeconfig.yaml`).replace(
      /[/\\]/g,
      '_',
    );
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return name;
  }

  // ---------------------------------------------------------------- tokens (shared)

  function tokenStatus(t) {
    if (t.revoked) return badge('revoked', 'bad');
    if (t.expired) return badge('expired', 'muted');
    return badge('active', 'good');
  }

  function tokenTable(tokens, names, fb, refresh, { showUser }) {
    const envNames = (ids) =>
      ids.length ? ids.map((id) => h('span', { class: 'tag' }, names.get(id) || `#${id} (removed)`)) : '—';
    const columns = [
      { label: 'Token', cell: (t) => h('code', { title: t.id }, t.id.slice(0, 8)) },
      showUser ? { label: 'User', cell: (t) => t.username } : null,
      { label: 'Issued', cell: (t) => time(t.issuedAt) },
      { label: 'Expires', cell: (t) => (t.expiresAt ? time(t.expiresAt) : 'never') },
      { label: 'Environments', cell: (t) => envNames(t.environmentIds) },
      { label: 'Status', cell: tokenStatus, class: 'status-cell' },
      {
        label: 'Actions',
        cell: (t) => {
          if (t.revoked || t.expired) return '';
          const b = h(
            'button',
            { type: 'button', class: 'small danger revoke', 'aria-label': `Revoke token ${t.id.slice(0, 8)} of ${t.username}` },
            'Revoke',
          );
          b.addEventListener('click', async () => {
            if (!(await confirmAction(`Revoke token ${t.id.slice(0, 8)} of ${t.username}? Every kubeconfig holding it stops working.`, 'Revoke', b))) return;
            await busy(b, fb, async () => {
              await api('DELETE', `/api/kubeconfig-tokens/${encodeURIComponent(t.id)}`);
              fb.ok(`Revoked token ${t.id.slice(0, 8)} of ${t.username}.`);
              await refresh();
            });
          });
          return b;
        },
      },
    ].filter(Boolean);
    return table(columns, tokens, {
      caption: 'Kubeconfig tokens',
      empty: 'No kubeconfig tokens.',
      rowAttrs: (t) => ({ dataset: { tokenId: t.id } }),
    });
  }

  // ---------------------------------------------------------------- settings

  async function renderSettings(view) {
    const settings = await api('GET', '/api/settings');
    const fb = feedback();
    fb.statusEl.id = 'settings-status';
    const choice = select(EXPIRY_CHOICES, settings.kubeconfigExpiry, { id: 'kubeconfig-expiry', name: 'kubeconfigExpiry' });
    const current = h('p', { id: 'expiry-current' }, `A kubeconfig downloaded now ${settings.kubeconfigExpiryDescription}.`);
    const save = h('button', { type: 'submit', class: 'primary', id: 'settings-save' }, 'Save');
    const form = h(
      'form',
      { class: 'card narrow' },
      field('Kubeconfig expiry', choice, 'Applies to kubeconfig files downloaded from now on; files already issued keep their expiry.'),
      current,
      fb.nodes,
      h('div', { class: 'actions' }, save),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(save, fb, async () => {
        const s = await api('PUT', '/api/settings', { kubeconfigExpiry: choice.value });
        current.textContent = `A kubeconfig downloaded now ${s.kubeconfigExpiryDescription}.`;
        fb.ok('Saved.');
      });
    });
    view.append(form);
  }

  // ---------------------------------------------------------------- kubeconfig tokens (admin)

  async function renderTokens(view, params) {
    const [users, envs] = await Promise.all([api('GET', '/api/users'), api('GET', '/api/endpoints')]);
    const names = new Map(envs.map((e) => [e.id, e.name]));
    const fb = feedback();
    fb.statusEl.id = 'tokens-status';
    const userFilter = select(
      [['', 'All users'], ...users.map((u) => [u.id, u.username])],
      params.get('user') || '',
      { id: 'token-user', name: 'user' },
    );
    const revokeAll = h('button', { type: 'button', class: 'danger', id: 'revoke-all' }, 'Revoke all of this user’s tokens');
    const list = h('div', { id: 'token-list' });
    const refresh = async () => {
      const id = userFilter.value;
      revokeAll.hidden = !id;
      const user = users.find((u) => String(u.id) === id);
      if (user) revokeAll.textContent = `Revoke all of ${user.username}’s tokens`;
      const tokens = await api('GET', `/api/kubeconfig-tokens${id ? `?userId=${encodeURIComponent(id)}` : ''}`);
      list.replaceChildren(tokenTable(tokens, names, fb, refresh, { showUser: true }));
    };
    userFilter.addEventListener('change', () => {
      history.replaceState(null, '', userFilter.value ? `#/tokens?user=${userFilter.value}` : '#/tokens');
      refresh().catch((e) => fb.error(e.message));
    });
    revokeAll.addEventListener('click', async () => {
      const user = users.find((u) => String(u.id) === userFilter.value);
      if (!user) return;
      if (!(await confirmAction(`Revoke every kubeconfig token of ${user.username} issued until now?`, 'Revoke all', revokeAll))) return;
      await busy(revokeAll, fb, async () => {
        await api('POST', `/api/users/${user.id}/kubeconfig-tokens/revoke`);
        fb.ok(`Revoked every token of ${user.username}.`);
        await refresh();
      });
    });
    view.append(
      h('p', { class: 'lead' }, 'Every kubeconfig file holds its own token. Revoking one stops that file at once, on every proxy.'),
      h('div', { class: 'toolbar' }, field('User', userFilter), revokeAll),
      fb.nodes,
      list,
    );
    await refresh();
  }

  // ---------------------------------------------------------------- environments (admin)

  function credentialFields(required, prefix) {
    const kindToken = h('input', { type: 'radio', name: newId('cred'), value: 'token', checked: true });
    const kindCert = h('input', { type: 'radio', name: kindToken.name, value: 'cert' });
    const token = h('input', { type: 'password', id: `${prefix}-token`, autocomplete: 'off', spellcheck: 'false' });
    const cert = h('textarea', { rows: 4, spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE-----' });
    const key = h('textarea', { rows: 4, spellcheck: 'false', placeholder: '-----BEGIN PRIVATE KEY-----' });
    const tokenBox = h('div', {}, field(required ? 'Bearer token' : 'New bearer token', token, required ? null : 'Leave empty to keep the current credential.'));
    const certBox = h('div', { hidden: true }, field('Client certificate (PEM)', cert), field('Client key (PEM)', key));
    const sync = () => {
      tokenBox.hidden = !kindToken.checked;
      certBox.hidden = !kindCert.checked;
    };
    kindToken.addEventListener('change', sync);
    kindCert.addEventListener('change', sync);
    const nodes = h(
      'fieldset',
      { class: 'credential' },
      h('legend', {}, 'Credential kubegate uses upstream'),
      h('div', { class: 'inline' }, checkbox('Token', kindToken), checkbox('Client certificate', kindCert)),
      tokenBox,
      certBox,
    );
    const value = () => {
      if (kindToken.checked) return token.value.trim() ? { token: token.value.trim() } : {};
      if (cert.value.trim() || key.value.trim()) return { clientCert: cert.value, clientKey: key.value };
      return {};
    };
    const clear = () => {
      token.value = '';
      cert.value = '';
      key.value = '';
    };
    return { nodes, value, clear };
  }

  async function renderEnvironments(view) {
    const fb = feedback();
    fb.statusEl.id = 'environments-status';
    const list = h('div', { id: 'environment-list' });
    const panel = h('div', { class: 'panel-slot' });
    let envs = [];
    const refresh = async () => {
      envs = await api('GET', '/api/endpoints');
      list.replaceChildren(
        table(
          [
            { label: 'ID', cell: (e) => String(e.id) },
            { label: 'Name', cell: (e) => h('span', { class: 'env-name' }, e.name) },
            { label: 'Upstream URL', cell: (e) => h('code', { class: 'url' }, e.url) },
            {
              label: 'TLS',
              cell: (e) => (e.insecureSkipTlsVerify ? badge('not verified', 'bad') : badge(e.hasCaCert ? 'own CA' : 'verified', 'good')),
            },
            { label: 'Credential', cell: (e) => (e.credential ? e.credential.kind : '—') },
            {
              label: 'Actions',
              cell: (e) => {
                const edit = h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${e.name}` }, 'Edit');
                const access = h('button', { type: 'button', class: 'small', 'aria-label': `Access to ${e.name}` }, 'Access');
                const remove = h('button', { type: 'button', class: 'small danger', 'aria-label': `Remove ${e.name}` }, 'Remove');
                edit.addEventListener('click', () => editEnvironment(panel, e, edit, fb, refresh));
                access.addEventListener('click', () => editAccess(panel, e, access).catch((err) => fb.error(err.message)));
                remove.addEventListener('click', async () => {
                  if (!(await confirmAction(`Remove environment ${e.name}? Its kubeconfig entries stop working.`, 'Remove', remove))) return;
                  await busy(remove, fb, async () => {
                    await api('DELETE', `/api/endpoints/${e.id}`);
                    panel.replaceChildren();
                    fb.ok(`Removed ${e.name}.`);
                    await refresh();
                  });
                });
                return h('div', { class: 'row-actions' }, edit, access, remove);
              },
            },
          ],
          envs,
          { caption: 'Environments', empty: 'No environments registered yet.', rowAttrs: (e) => ({ dataset: { envId: e.id } }) },
        ),
      );
    };

    // Register: the form keeps what was typed until the server accepts it.
    const rf = feedback();
    rf.errorEl.id = 'register-error';
    const name = h('input', { id: 'reg-name', required: true, maxlength: 128, autocomplete: 'off' });
    const url = h('input', { id: 'reg-url', type: 'url', required: true, placeholder: 'https://api.cluster.example:6443', autocomplete: 'off' });
    const ca = h('textarea', { id: 'reg-ca', rows: 4, spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE-----' });
    const insecure = h('input', { type: 'checkbox', id: 'reg-insecure' });
    const cred = credentialFields(true, 'reg');
    const register = h('button', { type: 'submit', class: 'primary', id: 'reg-submit' }, 'Register');
    const form = h(
      'form',
      { class: 'card', 'aria-labelledby': 'register-title' },
      h('h2', { id: 'register-title' }, 'Register an environment'),
      field('Name', name),
      field('API server URL', url),
      field('CA certificate (PEM)', ca, 'The CA the API server’s certificate chains to.'),
      checkbox('Skip TLS verification (insecure; only without a CA)', insecure),
      cred.nodes,
      rf.nodes,
      h('div', { class: 'actions' }, register),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(register, rf, async () => {
        const body = { name: name.value, url: url.value.trim(), ...cred.value() };
        if (ca.value.trim()) body.caCert = ca.value;
        if (insecure.checked) body.insecureSkipTlsVerify = true;
        const created = await api('POST', '/api/endpoints', body);
        rf.ok(`Registered ${name.value} as environment ${created.id}.`);
        name.value = '';
        url.value = '';
        ca.value = '';
        insecure.checked = false;
        cred.clear();
        await refresh();
      });
    });

    view.append(
      h('p', { class: 'lead' }, 'The clusters kubegate reaches, and who may reach each.'),
      fb.nodes,
      list,
      panel,
      form,
    );
    await refresh();
  }

  function openPanel(slot, titleText, ...children) {
    const title = h('h2', { tabindex: '-1' }, titleText);
    const section = h('section', { class: 'card panel', 'aria-label': titleText }, title, ...children);
    slot.replaceChildren(section);
    title.focus();
    return section;
  }

  function editEnvironment(slot, env, opener, pageFb, refresh) {
    const fb = feedback();
    fb.statusEl.id = 'edit-status';
    const name = h('input', { id: 'edit-name', value: env.name, required: true, maxlength: 128, autocomplete: 'off' });
    const url = h('input', { type: 'url', value: env.url, required: true, autocomplete: 'off' });
    const ca = h('textarea', { rows: 4, spellcheck: 'false', placeholder: 'Leave empty to keep the current CA' });
    const insecure = h('input', { type: 'checkbox', checked: env.insecureSkipTlsVerify });
    const cred = credentialFields(false, newId('edit'));
    const save = h('button', { type: 'submit', class: 'primary', id: 'edit-save' }, 'Save');
    const cancel = h('button', { type: 'button' }, 'Close');
    const form = h(
      'form',
      {},
      field('Name', name),
      field('API server URL', url),
      field('New CA certificate (PEM)', ca, 'A new CA turns verification on.'),
      checkbox('Skip TLS verification (insecure)', insecure),
      cred.nodes,
      fb.nodes,
      h('div', { class: 'actions' }, cancel, save),
    );
    cancel.addEventListener('click', () => {
      slot.replaceChildren();
      opener.focus();
    });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(save, fb, async () => {
        // Only what changed is sent: each kind of change is its own event.
        const body = { ...cred.value() };
        if (name.value !== env.name) body.name = name.value;
        if (url.value.trim() !== env.url) body.url = url.value.trim();
        if (ca.value.trim()) body.caCert = ca.value;
        if (insecure.checked !== env.insecureSkipTlsVerify) body.insecureSkipTlsVerify = insecure.checked;
        if (Object.keys(body).length === 0) {
          fb.ok('Nothing changed.');
          return;
        }
        const updated = await api('PUT', `/api/endpoints/${env.id}`, body);
        Object.assign(env, updated);
        ca.value = '';
        cred.clear();
        fb.ok(`Saved ${updated.name}.`);
        pageFb.clear();
        await refresh();
      });
    });
    openPanel(slot, `Edit ${env.name}`, form);
  }

  async function editAccess(slot, env, opener) {
    const [policy, users, teams] = await Promise.all([
      api('GET', `/api/endpoints/${env.id}/access`),
      api('GET', '/api/users'),
      api('GET', '/api/teams'),
    ]);
    const fb = feedback();
    fb.statusEl.id = 'access-status';
    const roleOptions = ROLES.map((r) => [r, r]);

    // One row per grant: who, role, namespaces (for the namespace-scoped roles).
    const makeRows = (kind, options, entries) => {
      const body = h('tbody');
      const rows = [];
      const add = (entry) => {
        const who = select(options, entry ? entry.id : options[0] && options[0][0], { 'aria-label': kind === 'user' ? 'User' : 'Team' });
        const role = select(roleOptions, entry ? entry.role : 'read-only', { 'aria-label': 'Role' });
        const ns = h('input', {
          value: entry ? entry.namespaces.join(', ') : '',
          placeholder: 'dev, qa',
          'aria-label': 'Namespaces',
          autocomplete: 'off',
          spellcheck: 'false',
        });
        const syncNs = () => {
          ns.disabled = !SCOPED_ROLES.has(role.value);
        };
        role.addEventListener('change', syncNs);
        syncNs();
        const remove = h('button', { type: 'button', class: 'small', 'aria-label': 'Remove this entry' }, 'Remove');
        const row = { who, role, ns };
        const tr = h('tr', {}, h('td', {}, who), h('td', {}, role), h('td', {}, ns), h('td', {}, remove));
        remove.addEventListener('click', () => {
          rows.splice(rows.indexOf(row), 1);
          tr.remove();
        });
        rows.push(row);
        body.append(tr);
        return who;
      };
      for (const e of entries) add(e);
      const addButton = h('button', { type: 'button', class: 'small', disabled: options.length === 0 }, kind === 'user' ? 'Add a user' : 'Add a team');
      addButton.addEventListener('click', () => add(null).focus());
      const tableEl = h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'editor' },
          h('thead', {}, h('tr', {}, [kind === 'user' ? 'User' : 'Team', 'Role', 'Namespaces', 'Actions'].map((l) => h('th', { scope: 'col' }, l)))),
          body,
        ),
      );
      const value = () =>
        rows.map((r) => ({
          [kind === 'user' ? 'userId' : 'teamId']: Number(r.who.value),
          role: r.role.value,
          ...(SCOPED_ROLES.has(r.role.value) ? { namespaces: splitList(r.ns.value) } : {}),
        }));
      return { nodes: [tableEl, addButton], value };
    };

    const userRows = makeRows(
      'user',
      users.map((u) => [u.id, u.username]),
      policy.users.map((u) => ({ id: u.userId, role: u.role, namespaces: u.namespaces || [] })),
    );
    const teamRows = makeRows(
      'team',
      teams.map((t) => [t.id, t.name]),
      policy.teams.map((t) => ({ id: t.teamId, role: t.role, namespaces: t.namespaces || [] })),
    );
    const save = h('button', { type: 'submit', class: 'primary', id: 'access-save' }, 'Save access');
    const close = h('button', { type: 'button' }, 'Close');
    close.addEventListener('click', () => {
      slot.replaceChildren();
      opener.focus();
    });
    const form = h(
      'form',
      {},
      h('p', { class: 'hint' }, 'Namespaces apply to the standard and read-only roles. A user holds the most permissive of their own and their teams’ entries. Admins reach every environment.'),
      h('h3', {}, 'Users'),
      userRows.nodes,
      h('h3', {}, 'Teams'),
      teamRows.nodes,
      fb.nodes,
      h('div', { class: 'actions' }, close, save),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(save, fb, async () => {
        await api('PUT', `/api/endpoints/${env.id}/access`, { users: userRows.value(), teams: teamRows.value() });
        fb.ok(`Saved who may reach ${env.name}.`);
      });
    });
    openPanel(slot, `Access to ${env.name}`, form);
  }

  // ---------------------------------------------------------------- users and teams (admin)

  async function renderUsers(view) {
    const fb = feedback();
    fb.statusEl.id = 'users-status';
    const userList = h('div', { id: 'user-list' });
    const teamList = h('div', { id: 'team-list' });
    const panel = h('div', { class: 'panel-slot' });
    let users = [];
    let teams = [];
    const userName = (id) => (users.find((u) => u.id === id) || { username: `#${id}` }).username;
    const refresh = async () => {
      [users, teams] = await Promise.all([api('GET', '/api/users'), api('GET', '/api/teams')]);
      const teamName = (id) => (teams.find((t) => t.id === id) || { name: `#${id}` }).name;
      userList.replaceChildren(
        table(
          [
            { label: 'User name', cell: (u) => u.username },
            { label: 'Role', cell: (u) => badge(u.role, u.role === 'admin' ? 'role admin' : 'role') },
            { label: 'Status', cell: (u) => (u.disabled ? badge('disabled', 'bad') : badge('active', 'good')) },
            { label: 'Teams', cell: (u) => (u.teamIds.length ? u.teamIds.map((t) => h('span', { class: 'tag' }, teamName(t))) : '—') },
            { label: 'Created', cell: (u) => time(u.createdAt) },
            {
              label: 'Actions',
              cell: (u) => {
                const edit = h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${u.username}` }, 'Edit');
                const tokens = h('a', { class: 'button small', href: `#/tokens?user=${u.id}` }, 'Tokens');
                const revoke = h('button', { type: 'button', class: 'small', 'aria-label': `Revoke the tokens of ${u.username}` }, 'Revoke tokens');
                const remove = h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${u.username}` }, 'Delete');
                edit.addEventListener('click', () => editUser(panel, u, edit, refresh));
                revoke.addEventListener('click', async () => {
                  if (!(await confirmAction(`Revoke every kubeconfig token of ${u.username} issued until now?`, 'Revoke all', revoke))) return;
                  await busy(revoke, fb, async () => {
                    await api('POST', `/api/users/${u.id}/kubeconfig-tokens/revoke`);
                    fb.ok(`Revoked every token of ${u.username}.`);
                  });
                });
                remove.addEventListener('click', async () => {
                  if (!(await confirmAction(`Delete user ${u.username}? Their tokens are revoked.`, 'Delete', remove))) return;
                  await busy(remove, fb, async () => {
                    await api('DELETE', `/api/users/${u.id}`);
                    panel.replaceChildren();
                    fb.ok(`Deleted ${u.username}.`);
                    await refresh();
                  });
                });
                return h('div', { class: 'row-actions' }, edit, tokens, revoke, remove);
              },
            },
          ],
          users,
          { caption: 'Users', rowAttrs: (u) => ({ dataset: { userId: u.id } }) },
        ),
      );
      teamList.replaceChildren(
        table(
          [
            { label: 'Team', cell: (t) => t.name },
            { label: 'Members', cell: (t) => (t.memberIds.length ? t.memberIds.map((m) => h('span', { class: 'tag' }, userName(m))) : '—') },
            {
              label: 'Actions',
              cell: (t) => {
                const edit = h('button', { type: 'button', class: 'small', 'aria-label': `Edit team ${t.name}` }, 'Edit');
                const remove = h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete team ${t.name}` }, 'Delete');
                edit.addEventListener('click', () => editTeam(panel, t, users, edit, refresh));
                remove.addEventListener('click', async () => {
                  if (!(await confirmAction(`Delete team ${t.name}?`, 'Delete', remove))) return;
                  await busy(remove, fb, async () => {
                    await api('DELETE', `/api/teams/${t.id}`);
                    panel.replaceChildren();
                    fb.ok(`Deleted team ${t.name}.`);
                    await refresh();
                  });
                });
                return h('div', { class: 'row-actions' }, edit, remove);
              },
            },
          ],
          teams,
          { caption: 'Teams', empty: 'No teams yet.', rowAttrs: (t) => ({ dataset: { teamId: t.id } }) },
        ),
      );
    };

    // New user.
    const uf = feedback();
    uf.statusEl.id = 'new-user-status';
    const username = h('input', { id: 'new-user-name', required: true, maxlength: 64, autocomplete: 'off', spellcheck: 'false' });
    const password = h('input', { id: 'new-user-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
    const role = select([['user', 'user'], ['admin', 'admin']], 'user', { id: 'new-user-role' });
    const create = h('button', { type: 'submit', class: 'primary', id: 'new-user-submit' }, 'Create user');
    const userForm = h(
      'form',
      { class: 'card', 'aria-labelledby': 'new-user-title' },
      h('h2', { id: 'new-user-title' }, 'New user'),
      h('div', { class: 'grid' }, field('User name', username), field('Password', password, 'At least 8 characters.'), field('Role', role)),
      uf.nodes,
      h('div', { class: 'actions' }, create),
    );
    userForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(create, uf, async () => {
        const created = await api('POST', '/api/users', { username: username.value, password: password.value, role: role.value });
        uf.ok(`Created ${created.username}.`);
        username.value = '';
        password.value = '';
        await refresh();
      });
    });

    // New team.
    const tf = feedback();
    tf.statusEl.id = 'new-team-status';
    const teamName = h('input', { id: 'new-team-name', required: true, maxlength: 64, autocomplete: 'off' });
    const createTeam = h('button', { type: 'submit', class: 'primary', id: 'new-team-submit' }, 'Create team');
    const teamForm = h(
      'form',
      { class: 'card', 'aria-labelledby': 'new-team-title' },
      h('h2', { id: 'new-team-title' }, 'New team'),
      field('Team name', teamName),
      tf.nodes,
      h('div', { class: 'actions' }, createTeam),
    );
    teamForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(createTeam, tf, async () => {
        const created = await api('POST', '/api/teams', { name: teamName.value });
        tf.ok(`Created team ${created.name}.`);
        teamName.value = '';
        await refresh();
      });
    });

    view.append(
      fb.nodes,
      h('h2', {}, 'Users'),
      userList,
      h('h2', {}, 'Teams'),
      teamList,
      panel,
      h('div', { class: 'columns' }, userForm, teamForm),
    );
    await refresh();
  }

  function editUser(slot, user, opener, refresh) {
    const fb = feedback();
    const role = select([['user', 'user'], ['admin', 'admin']], user.role);
    const disabled = h('input', { type: 'checkbox', checked: user.disabled });
    const password = h('input', { type: 'password', minlength: 8, autocomplete: 'new-password' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save');
    const close = h('button', { type: 'button' }, 'Close');
    close.addEventListener('click', () => {
      slot.replaceChildren();
      opener.focus();
    });
    const form = h(
      'form',
      {},
      h('p', { class: 'hint' }, 'A new role, a new password or disabling the account revokes every kubeconfig the user holds.'),
      field('Role', role),
      checkbox('Disabled (cannot sign in)', disabled),
      field('New password', password, 'Leave empty to keep the current password.'),
      fb.nodes,
      h('div', { class: 'actions' }, close, save),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(save, fb, async () => {
        const body = {};
        if (role.value !== user.role) body.role = role.value;
        if (disabled.checked !== user.disabled) body.disabled = disabled.checked;
        if (password.value) body.password = password.value;
        if (Object.keys(body).length === 0) {
          fb.ok('Nothing changed.');
          return;
        }
        const updated = await api('PUT', `/api/users/${user.id}`, body);
        Object.assign(user, updated);
        password.value = '';
        fb.ok(`Saved ${updated.username}.`);
        await refresh();
      });
    });
    openPanel(slot, `Edit ${user.username}`, form);
  }

  function editTeam(slot, team, users, opener, refresh) {
    const fb = feedback();
    const name = h('input', { value: team.name, required: true, maxlength: 64, autocomplete: 'off' });
    const rename = h('button', { type: 'submit', class: 'primary' }, 'Rename');
    const members = h('ul', { class: 'members', id: 'team-members' });
    const candidate = select([], '', { 'aria-label': 'User to add', id: 'team-candidate' });
    const addMember = h('button', { type: 'button', id: 'team-add-member' }, 'Add member');
    const close = h('button', { type: 'button' }, 'Close');
    const drawMembers = () => {
      members.replaceChildren(
        ...(team.memberIds.length ? [] : [h('li', { class: 'muted' }, 'No members yet.')]),
        ...team.memberIds.map((id) => {
          const u = users.find((x) => x.id === id) || { username: `#${id}` };
          const remove = h('button', { type: 'button', class: 'small', 'aria-label': `Remove ${u.username} from ${team.name}` }, 'Remove');
          remove.addEventListener('click', async () => {
            await busy(remove, fb, async () => {
              await api('DELETE', `/api/teams/${team.id}/members/${id}`);
              team.memberIds = team.memberIds.filter((m) => m !== id);
              fb.ok(`Removed ${u.username}.`);
              drawMembers();
              await refresh();
            });
          });
          return h('li', {}, h('span', {}, u.username), remove);
        }),
      );
      const others = users.filter((u) => !team.memberIds.includes(u.id));
      candidate.replaceChildren(...others.map((u) => h('option', { value: String(u.id) }, u.username)));
      addMember.disabled = others.length === 0;
    };
    addMember.addEventListener('click', async () => {
      const id = Number(candidate.value);
      if (!id) return;
      await busy(addMember, fb, async () => {
        const updated = await api('POST', `/api/teams/${team.id}/members`, { userId: id });
        team.memberIds = updated.memberIds;
        const added = users.find((u) => u.id === id);
        fb.ok(`Added ${added ? added.username : `#${id}`} to ${team.name}.`);
        drawMembers();
        await refresh();
      });
    });
    close.addEventListener('click', () => {
      slot.replaceChildren();
      opener.focus();
    });
    const form = h('form', {}, field('Team name', name), h('div', { class: 'actions' }, rename));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      await busy(rename, fb, async () => {
        const updated = await api('PUT', `/api/teams/${team.id}`, { name: name.value });
        team.name = updated.name;
        fb.ok(`Renamed to ${updated.name}.`);
        await refresh();
      });
    });
    drawMembers();
    openPanel(
      slot,
      `Edit team ${team.name}`,
      form,
      h('h3', {}, 'Members'),
      members,
      h('div', { class: 'inline' }, candidate, addMember),
      fb.nodes,
      h('div', { class: 'actions' }, close),
    );
  }

  // ---------------------------------------------------------------- audit (admin)

  // One row of `GET /api/audit` (the same rows as `kubegate audit --output json`): every key is
  // present, null when it does not apply; `summary` is the line a person reads.
  const AUDIT_COLUMNS = ['Time', 'Kind', 'User', 'Environment', 'What', 'Namespace', 'Result', 'Details'];

  const present = (v) => v !== undefined && v !== null && v !== '';

  function auditCells(row) {
    const user = present(row.user)
      ? [String(row.user), present(row.role) ? h('span', { class: 'muted' }, ` ${row.role}`) : null]
      : present(row.clientAddress)
        ? h('span', { class: 'muted' }, String(row.clientAddress))
        : '—';
    const envs = Array.isArray(row.environments) && row.environments.length ? row.environments.map((e) => h('span', { class: 'tag' }, String(e))) : '—';
    const what = present(row.summary)
      ? String(row.summary)
      : [row.verb, row.resource, row.name].filter(present).join(' ') || String(row.event || '—');
    const details = [];
    if (present(row.targetUser)) details.push(`user: ${row.targetUser}`);
    if (present(row.path)) details.push(`path: ${row.path}`);
    if (present(row.durationUs)) details.push(`${(row.durationUs / 1000).toFixed(1)} ms`);
    if (present(row.clientAddress) && present(row.user)) details.push(`from ${row.clientAddress}`);
    if (present(row.tokenId)) details.push(`token ${String(row.tokenId).slice(0, 8)}`);
    if (present(row.sessionId)) details.push(`session ${String(row.sessionId).slice(0, 8)}`);

    return [
      time(row.time),
      present(row.kind) ? badge(String(row.kind), 'kind') : '—',
      user,
      envs,
      h('span', { title: present(row.event) ? String(row.event) : false }, what),
      present(row.namespace) ? String(row.namespace) : '—',
      [
        present(row.decision) ? badge(String(row.decision), row.decision === 'denied' ? 'bad' : 'good') : null,
        present(row.status) ? h('span', {}, ` ${row.status}`) : null,
        present(row.reason) ? h('div', { class: 'muted' }, String(row.reason)) : null,
        !present(row.decision) && !present(row.status) && !present(row.reason) ? '—' : null,
      ],
      h(
        'span',
        { class: 'details' },
        details.join(' · '),
        // Everything one request caused, across services.
        present(row.correlationId)
          ? [
              details.length ? ' · ' : '',
              h(
                'a',
                { href: `#/audit?correlation=${encodeURIComponent(row.correlationId)}`, title: `Everything request ${row.correlationId} caused` },
                `request ${String(row.correlationId).slice(0, 8)}…`,
              ),
            ]
          : null,
      ),
    ];
  }

  async function renderAudit(view, params) {
    const envs = await api('GET', '/api/endpoints');
    const fb = feedback();
    fb.statusEl.id = 'audit-status';
    const input = (key, attrs) => h('input', { name: key, value: params.get(key) || '', autocomplete: 'off', spellcheck: 'false', ...attrs });
    const since = input('since', { placeholder: '1h' });
    const until = input('until', { placeholder: 'now' });
    const user = input('user', { placeholder: 'alice' });
    const env = input('env', { placeholder: 'id or name', list: 'audit-envs' });
    const envList = h('datalist', { id: 'audit-envs' }, envs.map((e) => h('option', { value: String(e.id) }, e.name)));
    const namespace = input('namespace', { placeholder: 'dev' });
    const kind = select([['', 'any'], ...AUDIT_KINDS.map((k) => [k, k])], params.get('kind') || '', { name: 'kind' });
    const decision = select([['', 'any'], ['allowed', 'allowed'], ['denied', 'denied']], params.get('decision') || '', { name: 'decision' });
    const correlation = input('correlation', { placeholder: 'x-kubegate-request-id' });
    const limit = input('limit', { type: 'number', min: 1, max: 1000, value: params.get('limit') || '100' });
    const search = h('button', { type: 'submit', class: 'primary', id: 'audit-search' }, 'Search');
    const more = h('button', { type: 'button', id: 'audit-more', hidden: true }, 'Load more');
    const results = h('div', { id: 'audit-results' });
    const rowsBody = h('tbody');
    let cursor = null;
    let shown = 0;

    const query = () => {
      const q = new URLSearchParams();
      for (const el of [since, until, user, env, namespace, kind, decision, correlation, limit]) {
        if (el.value.trim()) q.set(el.name, el.value.trim());
      }
      return q;
    };
    const load = async (append) => {
      const q = query();
      if (append && cursor) q.set('cursor', cursor);
      const page = await api('GET', `/api/audit?${q}`);
      const items = (page && page.items) || [];
      if (!append) {
        rowsBody.replaceChildren();
        shown = 0;
        results.replaceChildren(
          h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              { class: 'audit' },
              h('caption', { class: 'sr-only' }, 'Audit records'),
              h('thead', {}, h('tr', {}, AUDIT_COLUMNS.map((l) => h('th', { scope: 'col' }, l)))),
              rowsBody,
            ),
          ),
        );
      }
      for (const row of items) {
        rowsBody.append(h('tr', {}, auditCells(row).map((cell) => h('td', {}, cell))));
      }
      shown += items.length;
      cursor = page && page.nextCursor ? page.nextCursor : null;
      more.hidden = !cursor;
      if (shown === 0) fb.ok(cursor ? 'Nothing found in the records searched so far; Load more searches further.' : 'No records match.');
      else fb.ok(`${shown} record${shown === 1 ? '' : 's'}${cursor ? '; more are available' : ''}.`);
    };
    const form = h(
      'form',
      { class: 'card filters', 'aria-label': 'Audit filters' },
      h(
        'div',
        { class: 'grid' },
        field('Since', since, 'A duration (1h, 30m, 7d) or a date-time.'),
        field('Until', until),
        field('User', user),
        field('Environment', env),
        field('Namespace', namespace),
        field('Kind', kind),
        field('Decision', decision),
        field('Request id', correlation),
        field('Limit', limit),
      ),
      envList,
      h('div', { class: 'actions' }, search),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const q = query();
      history.replaceState(null, '', `#/audit${q.toString() ? `?${q}` : ''}`);
      await busy(search, fb, () => load(false));
    });
    more.addEventListener('click', () => busy(more, fb, () => load(true)));
    view.append(
      h('p', { class: 'lead' }, 'Sign-ins, downloads, token, user, settings and access changes, and every request through the proxy, in one timeline. The same filters as ', h('code', {}, 'kubegate audit'), '.'),
      form,
      fb.nodes,
      results,
      more,
    );
    await busy(search, fb, () => load(false));
  }

  // ---------------------------------------------------------------- start

  document.getElementById('sign-out').addEventListener('click', () => signOut('You have signed out.'));
  // The skip link moves focus to the content without changing the screen.
  document.querySelector('.skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    document.getElementById('main').focus();
  });
  window.addEventListener('hashchange', () => {
    if (location.hash === '' || location.hash.startsWith('#/')) show();
  });
  show();
})();
