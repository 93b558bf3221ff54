// Getting in without a login link: the sign-in screen the page shows when the API
// answers 401, which trades an API key for the session cookie (`POST /api/v1/session`),
// and signing out (`DELETE /api/v1/session`). The key goes to the server once, in a
// header; the page keeps only the cookie, which its scripts cannot read (HttpOnly).
import "./signin.css";
import { api, ApiError } from "./api.ts";

const LOGO = `<svg viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32" rx="7" fill="#1f6feb"/><path d="M7 11c4-4 8 4 12 0s6-2 6-2M7 17c4-4 8 4 12 0s6-2 6-2M7 23c4-4 8 4 12 0s6-2 6-2" stroke="#fff" stroke-width="2.4" fill="none" stroke-linecap="round"/></svg>`;

const HTML = `
<main class="signin">
  <form class="signin-card" data-testid="signin" novalidate>
    <div class="brand">${LOGO}<span class="name">Sandstream</span><span class="sub">playground</span></div>
    <h1>Sign in</h1>
    <p class="signin-lead">Paste an API key. The page keeps a session cookie for it, never the key itself.</p>
    <label class="signin-label" for="signin-key">API key</label>
    <input id="signin-key" data-testid="signin-key" name="key" type="password" autocomplete="off" spellcheck="false" placeholder="ss_…" />
    <p class="signin-error" data-testid="signin-error" role="alert" hidden></p>
    <button class="btn primary" data-testid="signin-submit" type="submit">Sign in</button>
    <p class="signin-hint">
      No key at hand? On a machine that has one, <code>sandstream login-link --server URL</code>
      prints a one-time link to this page (it uses the key in <code>SANDSTREAM_API_KEY</code>);
      the admin makes tenant keys with <code>sandstream keys create NAME</code>.
    </p>
  </form>
</main>`;

/** Why a key was not accepted, in words. */
export function signInError(err: unknown): string {
  if (!(err instanceof ApiError)) return String(err);
  if (err.status === 401) return "That API key was not accepted: it is unknown or has been revoked.";
  if (err.status === 429) return "Too many wrong keys from this address: wait a minute, then try again.";
  return err.message;
}

/** Trades `key` for a session cookie; throws an ApiError when the server refuses it. */
export async function signIn(key: string): Promise<void> {
  await api("POST", "/api/v1/session", undefined, { timeoutMs: 15000, headers: { authorization: `Bearer ${key}` } });
}

/** Ends this browser's session on the server and drops its cookie. */
export async function signOut(): Promise<void> {
  await api("DELETE", "/api/v1/session", undefined, { timeoutMs: 15000 });
}

/** Shows the sign-in screen in `app`; a signed-in page loads in its place. */
export function mountSignIn(app: HTMLElement) {
  document.body.dataset.auth = "signed-out";
  app.innerHTML = HTML;
  const form = app.querySelector<HTMLFormElement>('[data-testid="signin"]')!;
  const input = app.querySelector<HTMLInputElement>('[data-testid="signin-key"]')!;
  const error = app.querySelector<HTMLElement>('[data-testid="signin-error"]')!;
  const submit = app.querySelector<HTMLButtonElement>('[data-testid="signin-submit"]')!;
  const fail = (text: string) => {
    error.textContent = text;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.select();
  };
  input.focus();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    // A header value must be printable ASCII; say so rather than fail in fetch.
    if (!key) return fail("Paste an API key first.");
    if (!/^[\x21-\x7e]+$/.test(key)) return fail("That is not an API key: a key has no spaces and no characters outside ASCII.");
    submit.disabled = true;
    error.hidden = true;
    try {
      await signIn(key);
      input.value = "";
      location.replace("/");
    } catch (err) {
      fail(signInError(err));
    } finally {
      submit.disabled = false;
    }
  });
}
