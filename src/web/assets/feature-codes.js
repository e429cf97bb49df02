// The feature codes editor: the codes from `GET /api/v1/feature-codes` as rows to change, add
// and remove; Save sends them all with PUT (the engine validates them, writes the config file
// and applies them), Reload asks it to read the file again. Admins only: others are told so.
'use strict';

sc.start(async (me) => {
  const form = document.getElementById('codes-form');
  if (me.principal.kind !== 'admin') {
    form.remove();
    document.getElementById('not-admin').hidden = false;
    return;
  }
  const body = document.getElementById('codes');
  const result = document.getElementById('codes-result');
  let next = 0;

  form.hidden = false;
  show((await sc.api('GET', '/feature-codes')).data.codes);

  document.getElementById('add-code').addEventListener('click', () => {
    addRow({ code: '', enabled: true }).querySelector('input[type=text]').focus();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await act('PUT', '/feature-codes', { codes: collect() }, 'Saved; the engine uses these codes now.');
  });
  document.getElementById('reload').addEventListener('click', async () => {
    await act('POST', '/reload', {}, 'The configuration file was read again.');
  });

  async function act(method, path, payload, done) {
    result.textContent = '';
    sc.alert('');
    try {
      const { data } = await sc.api(method, path, payload);
      if (data && Array.isArray(data.codes)) show(data.codes);
      else show((await sc.api('GET', '/feature-codes')).data.codes);
      result.textContent = done;
    } catch (e) {
      sc.alert((method === 'PUT' ? 'Not saved: ' : 'Not reloaded: ') + e.message);
    }
  }

  function show(codes) {
    body.textContent = '';
    for (const c of codes) addRow(c);
  }

  function collect() {
    return [...body.querySelectorAll('tr')].map((tr) => ({
      code: tr.querySelector('input[type=text]').value.trim(),
      enabled: tr.querySelector('input[type=checkbox]').checked,
    }));
  }

  function addRow(c) {
    next += 1;
    const tr = document.createElement('tr');
    const codeCell = document.createElement('td');
    const codeLabel = document.createElement('label');
    codeLabel.className = 'visually-hidden';
    codeLabel.htmlFor = 'code-' + next;
    codeLabel.textContent = 'Code ' + next;
    const code = document.createElement('input');
    code.type = 'text';
    code.id = 'code-' + next;
    code.value = c.code;
    code.required = true;
    code.autocomplete = 'off';
    code.inputMode = 'tel';
    code.maxLength = 16;
    codeCell.append(codeLabel, code);

    const onCell = document.createElement('td');
    const on = document.createElement('input');
    on.type = 'checkbox';
    on.id = 'enabled-' + next;
    on.checked = c.enabled !== false;
    const onLabel = document.createElement('label');
    onLabel.htmlFor = on.id;
    onLabel.textContent = 'Enabled';
    onCell.append(on, ' ', onLabel);

    const removeCell = document.createElement('td');
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', 'Remove code ' + next);
    remove.addEventListener('click', () => { tr.remove(); document.getElementById('add-code').focus(); });
    removeCell.appendChild(remove);

    tr.append(codeCell, onCell, removeCell);
    body.appendChild(tr);
    return tr;
  }
});
