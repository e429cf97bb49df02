// The presence board: every extension, filtered in the browser, kept current by the
// `/api/v1/events` stream. Rows are loaded in pages of 500 and built once; a change updates
// its row in place. The stream is opened before the rows are read, and a change applies only
// if its version is newer than the row's, so nothing between the two is lost or undone.
'use strict';

sc.start(async () => {
  const PAGE = 500;
  const tbody = document.getElementById('rows');
  const filter = document.getElementById('filter');
  const statusFilter = document.getElementById('status-filter');
  const count = document.getElementById('count');
  const empty = document.getElementById('empty');
  /** extension -> {row: the API's row, tr: its <tr>} */
  const rows = new Map();
  let loaded = false;
  const early = [];

  sc.follow((change) => {
    if (loaded) apply(change); else early.push(change);
  });

  for (let offset = 0; ;) {
    const { data } = await sc.api('GET', '/extensions?offset=' + offset + '&limit=' + PAGE);
    const fragment = document.createDocumentFragment();
    for (const row of data.items) fragment.appendChild(add(row));
    tbody.appendChild(fragment);
    offset += data.items.length;
    if (data.items.length === 0 || offset >= data.total) break;
  }
  loaded = true;
  early.splice(0).forEach(apply);
  refilter();

  let pending = null;
  filter.addEventListener('input', () => {
    clearTimeout(pending);
    pending = setTimeout(refilter, 150);
  });
  statusFilter.addEventListener('change', refilter);

  /** A change from the stream: update its row in place, or add a row for a new extension. */
  function apply(change) {
    const known = rows.get(change.extension);
    if (!known) {
      tbody.appendChild(add({
        extension: change.extension, name: null, watchers: 0, status: change.status,
        custom_text: change.custom_text, version: change.version,
        updated_at: change.updated_at, source: change.source,
      }));
      refilter();
      return;
    }
    if (change.version <= known.row.version) return;
    Object.assign(known.row, {
      status: change.status, custom_text: change.custom_text, version: change.version,
      updated_at: change.updated_at, source: change.source,
    });
    fill(known.tr, known.row);
    known.tr.hidden = !matches(known.row);
    known.tr.classList.remove('changed');
    void known.tr.offsetWidth; // restart the highlight
    known.tr.classList.add('changed');
    counts();
  }

  function cell(tr, label, className) {
    const td = document.createElement('td');
    td.dataset.label = label;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  /** A new <tr> for a row (static cells here, changing ones in fill). */
  function add(row) {
    const tr = document.createElement('tr');
    tr.dataset.ext = row.extension;
    const link = document.createElement('a');
    link.href = '/extensions/' + encodeURIComponent(row.extension);
    link.textContent = row.extension;
    cell(tr, 'Extension', 'ext').appendChild(link);
    cell(tr, 'Name', 'name').textContent = row.name || '';
    cell(tr, 'Presence', 'status').appendChild(sc.badge(row.status));
    cell(tr, 'Custom text', 'text');
    cell(tr, 'Watchers', 'watchers').textContent = String(row.watchers);
    cell(tr, 'Last change', 'changed').appendChild(sc.time(row.updated_at));
    const actions = cell(tr, 'Actions', 'act');
    if (sc.maySet(row.extension)) {
      const edit = document.createElement('a');
      edit.className = 'edit';
      edit.href = link.href;
      edit.textContent = 'Change';
      edit.setAttribute('aria-label', 'Change the status of ' + row.extension);
      actions.appendChild(edit);
    }
    fill(tr, row);
    rows.set(row.extension, { row, tr });
    return tr;
  }

  function fill(tr, row) {
    sc.setBadge(tr.querySelector('.status .badge'), row.status);
    tr.querySelector('.text').textContent = row.custom_text || '';
    sc.setTime(tr.querySelector('.changed time'), row.updated_at);
    tr.dataset.version = String(row.version);
  }

  function matches(row) {
    const wanted = statusFilter.value;
    if (wanted && row.status !== wanted) return false;
    const needle = filter.value.trim().toLowerCase();
    if (!needle) return true;
    return [row.extension, row.name, row.custom_text]
      .some((v) => v && v.toLowerCase().includes(needle));
  }

  function refilter() {
    for (const { row, tr } of rows.values()) tr.hidden = !matches(row);
    counts();
  }

  function counts() {
    let shown = 0;
    for (const { tr } of rows.values()) if (!tr.hidden) shown += 1;
    count.textContent = shown === rows.size
      ? rows.size + ' extensions'
      : 'Showing ' + shown + ' of ' + rows.size + ' extensions';
    empty.hidden = shown !== 0;
  }
});
