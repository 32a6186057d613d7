// Page-wide state: the signed-in user and the confirm dialog.
import { api, setCsrfToken, type Me, type Sdk } from "../api/client";

// The cookie is HttpOnly, so the page cannot see it; this flag only saves a visitor
// who never signed in from a pointless (and console-logged) 401 on /auth/me.
const HINT = "picloud.signed-in";

class Session {
  me = $state<Me | null>(null);
  checked = $state(false);

  async refresh() {
    try {
      if (localStorage.getItem(HINT) !== "1") {
        this.me = null;
        return;
      }
      const me = await api.me();
      setCsrfToken(me.csrf_token);
      this.me = me;
    } catch {
      this.signedOut();
    } finally {
      this.checked = true;
    }
  }

  /** After a successful login or set-up. */
  async signedIn() {
    localStorage.setItem(HINT, "1");
    await this.refresh();
  }

  signedOut() {
    localStorage.removeItem(HINT);
    setCsrfToken(null);
    this.me = null;
  }
}
export const session = new Session();

interface ConfirmRequest {
  title: string;
  message: string;
  action: string;
  resolve: (ok: boolean) => void;
}
class Confirmer {
  request = $state<ConfirmRequest | null>(null);

  ask(title: string, message: string, action = "Delete"): Promise<boolean> {
    this.request?.resolve(false);
    return new Promise((resolve) => {
      this.request = { title, message, action, resolve };
    });
  }

  answer(ok: boolean) {
    const r = this.request;
    this.request = null;
    r?.resolve(ok);
  }
}
export const confirmer = new Confirmer();
export const confirmAction = (title: string, message: string, action?: string) =>
  confirmer.ask(title, message, action);

let sdkPromise: Promise<Sdk | null> | null = null;
/** The SDK description, fetched once per page load. */
export function loadSdk(): Promise<Sdk | null> {
  sdkPromise ??= api.sdk().catch(() => null);
  return sdkPromise;
}
