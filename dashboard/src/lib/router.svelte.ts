// A tiny history router under /_/ (the server answers every /_/… path with the app
// shell). Links are plain <a href="/_/…"> — keyboard and middle-click work — and a
// document-level click handler turns same-app clicks into pushState navigations.

export const BASE = "/_/";

/** Asked before leaving the page (the editor's unsaved-change guard). */
type Guard = () => Promise<boolean>;

class Router {
  path = $state(current());
  query = $state(new URLSearchParams(location.search));
  private guard: Guard | null = null;
  private shown = location.href;

  setGuard(guard: Guard | null) {
    this.guard = guard;
  }

  async navigate(to: string, replace = false) {
    const url = new URL(to.startsWith("/") ? to : BASE + to, location.origin);
    if (url.pathname + url.search === location.pathname + location.search) return;
    if (this.guard && !(await this.guard())) return;
    this.guard = null;
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    this.sync();
  }

  sync() {
    this.shown = location.href;
    this.path = current();
    this.query = new URLSearchParams(location.search);
  }

  start() {
    addEventListener("popstate", async () => {
      if (this.guard) {
        // The URL has already changed: show the guarded page's URL again while asking.
        const target = location.href;
        history.pushState(null, "", this.shown);
        if (!(await this.guard())) return;
        this.guard = null;
        history.replaceState(null, "", target);
      }
      this.sync();
    });
    addEventListener("click", (e) => {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      const a = (e.target as Element | null)?.closest?.("a");
      if (!a || a.target || a.hasAttribute("download")) return;
      const href = a.getAttribute("href");
      if (!href || !href.startsWith(BASE)) return;
      e.preventDefault();
      void this.navigate(href);
    });
    addEventListener("beforeunload", (e) => {
      if (this.guard) e.preventDefault();
    });
  }
}

function current(): string {
  const p = location.pathname;
  return p.startsWith(BASE) ? p.slice(BASE.length).replace(/\/+$/, "") : "";
}

export const router = new Router();

/** `/_/apps/{app}/{tab}` links. */
export function appHref(app: string, tab = "", ...rest: string[]): string {
  const parts = [encodeURIComponent(app), tab, ...rest.map(encodeURIComponent)].filter(Boolean);
  return `${BASE}apps/${parts.join("/")}`;
}
