// One extension: its status now, a form to set it (for those who may), its history and its
// watchers. A change is sent with If-Match of the version shown: if someone changed the
// extension meanwhile the API answers 412, and the page shows the new state and says so
// rather than overwrite a change its user has not seen. The page follows the extension's
// changes from `/api/v1/events`: the current status and history at once, and the form too
// unless its user has started editing it (then a save meets the 412 above).
'use strict';

sc.start(async () => {
  const MAX_TEXT = 64;
  const ext = decodeURIComponent(location.pathname.split('/')[2] || '');
  const path = '/extensions/' + encodeURIComponent(ext);
  const form = document.getElementById('set-status');
  const text = document.getElementById('custom-text');
  const counter = document.getElementById('counter');
  const saved = document.getElementById('saved');
  let version = null;
  /** The form holds the user's own choice: live changes no longer overwrite it. */
  let editing = false;

  document.getElementById('title').textContent = 'Extension ' + ext;
  document.title = 'Extension ' + ext + ' · starcode';

  if (sc.maySet(ext)) {
    form.hidden = false;
    form.addEventListener('change', () => { editing = true; });
    text.addEventListener('input', () => {
      editing = true;
      countText();
      if (text.value.trim()) form.querySelector('#st-custom').checked = true;
    });
    form.addEventListener('submit', (event) => { event.preventDefault(); save(); });
  } else {
    form.remove();
    document.getElementById('read-only').hidden = false;
  }

  follow();
  await Promise.all([showName(), showPresence(true), showHistory(), showWatchers()]);

  /** Opened before the first read; a change older than what is shown is ignored. */
  function follow() {
    sc.follow(async (change) => {
      if (change.extension !== ext) return;
      const shown = Number(document.getElementById('now').dataset.version || -1);
      if (change.version <= shown) return;
      try {
        await Promise.all([showPresence(!editing), showHistory()]);
      } catch (e) {
        sc.alert('Could not read the latest change: ' + e.message);
      }
    });
  }

  /** Characters, not UTF-16 units: what the API counts. */
  function countText() {
    counter.textContent = [...text.value].length + '/' + MAX_TEXT;
  }

  async function showName() {
    const { data } = await sc.api('GET', '/extensions?limit=1000&search=' + encodeURIComponent(ext));
    const row = data.items.find((r) => r.extension === ext);
    if (row && row.name) {
      document.getElementById('title').textContent = 'Extension ' + ext + ' · ' + row.name;
    }
  }

  /** Reads the presence; `intoForm` also puts it in the form and takes its version as the
   * one a save must match (on load, after a 412, and live while the form is untouched). */
  async function showPresence(intoForm) {
    const { data } = await sc.api('GET', path + '/presence');
    if (intoForm || version === null) version = data.version;
    const now = document.getElementById('now');
    now.textContent = '';
    now.appendChild(sc.badge(data.status));
    if (data.custom_text) now.append(' ', data.custom_text);
    if (data.updated_at) {
      now.append(' · changed ');
      now.appendChild(sc.time(data.updated_at));
    }
    now.dataset.version = String(data.version);
    if (intoForm && document.body.contains(form)) {
      const radio = form.querySelector('input[name=status][value="' + data.status + '"]');
      if (radio) radio.checked = true;
      text.value = data.custom_text || '';
      countText();
      editing = false;
    }
    return data;
  }

  async function save() {
    saved.textContent = '';
    sc.alert('');
    const chosen = form.querySelector('input[name=status]:checked');
    if (!chosen) { sc.alert('Choose a status.'); return; }
    const body = { status: chosen.value };
    const typed = text.value.trim();
    if (chosen.value === 'custom') {
      if (!typed) { sc.alert('Type the custom text (1 to 64 characters).'); text.focus(); return; }
      body.text = typed;
    }
    const button = document.getElementById('save');
    button.disabled = true;
    try {
      const { data } = await sc.api('PUT', path + '/presence', body, { 'If-Match': '"' + version + '"' });
      version = data.version;
      editing = false;
      saved.textContent = 'Saved: ' + sc.LABELS[data.status] + '.';
      await Promise.all([showPresence(false), showHistory()]);
    } catch (e) {
      if (e.status === 412) {
        const current = await showPresence(true);
        sc.alert('Someone changed extension ' + ext + ' meanwhile: it is now '
          + sc.LABELS[current.status] + '. The form shows the current status; choose again and save.');
        await showHistory();
      } else {
        sc.alert('Not saved: ' + e.message);
      }
    } finally {
      button.disabled = false;
    }
  }

  async function showHistory() {
    const { data } = await sc.api('GET', path + '/history?limit=50');
    const body = document.getElementById('history');
    body.textContent = '';
    for (const h of data) {
      const tr = document.createElement('tr');
      const when = document.createElement('td');
      when.appendChild(sc.time(h.at));
      const what = document.createElement('td');
      what.appendChild(sc.badge(h.status));
      if (h.status === 'custom' && h.custom_text) what.append(' ', h.custom_text);
      const who = document.createElement('td');
      who.textContent = h.actor || '';
      const how = document.createElement('td');
      how.textContent = h.source.replace('_', ' ');
      tr.append(when, what, who, how);
      body.appendChild(tr);
    }
    document.getElementById('history-empty').hidden = data.length !== 0;
  }

  async function showWatchers() {
    const { data } = await sc.api('GET', path + '/watchers');
    const list = document.getElementById('watchers');
    list.textContent = '';
    for (const w of data) {
      const li = document.createElement('li');
      li.append(w.watcher + ' (' + w.transport.toUpperCase() + ', ' + w.contact + '), until ');
      const until = document.createElement('time');
      until.dateTime = new Date(w.expires_at).toISOString();
      until.textContent = new Date(w.expires_at).toLocaleTimeString();
      li.appendChild(until);
      list.appendChild(li);
    }
    document.getElementById('watchers-empty').hidden = data.length !== 0;
  }
});
