// Shared by every page: who is signed in, API calls (with the session's CSRF token on
// changes), the alert area, status names and badges, relative times. No framework: the
// pages are small, and the browser's own APIs suffice.
'use strict';

const sc = (() => {
  // The product's menu order (the feature code's 1 to 6).
  const STATUSES = [
    ['unavailable', 'Unavailable'],
    ['available', 'Available'],
    ['away', 'Away'],
    ['chat', 'Chat'],
    ['dnd', 'Do not disturb'],
    ['custom', 'Custom'],
  ];
  const LABELS = Object.fromEntries(STATUSES);

  /** An API answer that is not 2xx: its status and the API's error text and field. */
  class ApiFailure extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body || null;
    }
  }

  let me = null;

  /** Calls `/api/v1` + path; resolves to {data, response}, or throws an ApiFailure. */
  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({ Accept: 'application/json' }, extraHeaders || {});
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (method !== 'GET' && me && me.csrf) headers['X-CSRF-Token'] = me.csrf;
    let response;
    try {
      response = await fetch('/api/v1' + path, init);
    } catch (e) {
      throw new ApiFailure(0, 'The engine cannot be reached (' + e.message + ').');
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!response.ok) {
      let message = (data && data.error) || ('The engine answered ' + response.status + '.');
      if (data && data.field) message += ' (' + data.field + ')';
      throw new ApiFailure(response.status, message, data);
    }
    return { data, response };
  }

  /** Shows a message in the page's alert area (empty hides it). */
  function alert(message) {
    const area = document.getElementById('alert');
    area.textContent = message || '';
    area.hidden = !message;
  }

  /** A coloured badge with the status's name: colour is never the only sign. */
  function badge(status) {
    const span = document.createElement('span');
    setBadge(span, status);
    return span;
  }

  function setBadge(span, status) {
    span.className = 'badge badge-' + (LABELS[status] ? status : 'unknown');
    span.textContent = LABELS[status] || status;
    span.dataset.status = status;
  }

  /** "just now", "5 min ago", "3 h ago", "2 days ago" (or "never"). */
  function relative(ms, now) {
    if (ms === null || ms === undefined) return 'never';
    const s = Math.max(0, Math.round(((now || Date.now()) - ms) / 1000));
    if (s < 45) return 'just now';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    const days = Math.round(s / 86400);
    return days + (days === 1 ? ' day ago' : ' days ago');
  }

  /** A <time> element with the relative time, the exact one as its title. */
  function time(ms) {
    const t = document.createElement('time');
    setTime(t, ms);
    return t;
  }

  function setTime(t, ms) {
    t.dataset.ms = ms === null || ms === undefined ? '' : String(ms);
    t.textContent = relative(ms);
    if (ms !== null && ms !== undefined) {
      const d = new Date(ms);
      t.dateTime = d.toISOString();
      t.title = d.toLocaleString();
    }
  }

  /** Keeps every <time data-ms> on the page current. */
  function tickTimes() {
    for (const t of document.querySelectorAll('time[data-ms]')) {
      if (t.dataset.ms) t.textContent = relative(Number(t.dataset.ms));
    }
  }

  /** Whether the signed-in party may set `ext` (the API decides; this only hides controls). */
  function maySet(ext) {
    if (!me) return false;
    return me.principal.kind === 'admin' || me.principal.name === ext;
  }

  function describe(principal) {
    return principal.kind === 'admin' ? 'admin ' + principal.name : 'extension ' + principal.name;
  }

  /** The party signed in, or null after sending the browser to the sign-in page. */
  async function signedIn() {
    try {
      me = (await api('GET', '/me')).data;
    } catch (e) {
      if (e.status === 401) {
        const here = location.pathname + location.search;
        location.assign('/login' + (here === '/' ? '' : '?next=' + encodeURIComponent(here)));
        return null;
      }
      throw e;
    }
    document.getElementById('who-name').textContent = 'Signed in as ' + describe(me.principal);
    document.getElementById('who').hidden = false;
    document.getElementById('nav-admin').hidden = me.principal.kind !== 'admin';
    return me;
  }

  async function signOut() {
    try {
      await api('POST', '/logout', {});
    } catch (e) {
      if (e.status !== 401) { alert('Signing out failed: ' + e.message); return; }
    }
    location.assign('/login');
  }

  /** Follows `/api/v1/events`, handing each change to `onPresence`, and shows the stream's
   * state in #live. A dropped stream is reconnected by the browser (with Last-Event-ID); one
   * the engine refuses (it ends a stream whose session ended) is not, so the page then asks
   * who is signed in, which leads to the sign-in page when nobody is any more. */
  function follow(onPresence) {
    const live = document.getElementById('live');
    const events = new EventSource('/api/v1/events');
    events.addEventListener('open', () => { live.textContent = 'Live'; live.dataset.state = 'live'; });
    events.addEventListener('error', async () => {
      if (events.readyState !== EventSource.CLOSED) {
        live.textContent = 'Reconnecting…';
        live.dataset.state = 'down';
        return;
      }
      live.textContent = 'Not live: reload the page';
      live.dataset.state = 'closed';
      try { await signedIn(); } catch (e) { alert(e.message); }
    });
    events.addEventListener('presence', (message) => {
      let change;
      try { change = JSON.parse(message.data); } catch (_) { return; }
      onPresence(change);
    });
  }

  /** Runs a page's script once the page is parsed and the party known. */
  function start(page) {
    document.addEventListener('DOMContentLoaded', async () => {
      document.getElementById('sign-out').addEventListener('click', signOut);
      try {
        const who = await signedIn();
        if (!who) return;
        await page(who);
        setInterval(tickTimes, 30000);
      } catch (e) {
        alert(e.message);
      } finally {
        document.body.dataset.ready = '1';
      }
    });
  }

  return { STATUSES, LABELS, ApiFailure, api, alert, badge, setBadge, time, setTime, relative,
    maySet, follow, start, me: () => me };
})();
