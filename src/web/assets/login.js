// The sign-in form: POST /api/v1/login sets the session cookie; then on to the page asked for
// (only a path on this site) or the board.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const form = document.getElementById('login-form');

  function destination() {
    const next = new URLSearchParams(location.search).get('next') || '/';
    // A path of this site only: "//host" or "/\host" would leave it.
    return /^\/(?![\/\\])/.test(next) ? next : '/';
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    sc.alert('');
    const button = document.getElementById('sign-in');
    button.disabled = true;
    try {
      await sc.api('POST', '/login', {
        user: document.getElementById('user').value.trim(),
        password: document.getElementById('password').value,
      });
      location.assign(destination());
    } catch (e) {
      if (e.status === 401) sc.alert('Wrong name or password.');
      else if (e.status === 429) sc.alert('Too many attempts; wait a moment and try again.');
      else sc.alert('Not signed in: ' + e.message);
      document.getElementById('password').select();
    } finally {
      button.disabled = false;
      document.body.dataset.ready = '1';
    }
  });
  document.body.dataset.ready = '1';
});
