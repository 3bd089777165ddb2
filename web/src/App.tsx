import { useEffect, useRef, type ReactNode } from "react";
import { checkSession, signOut, useSession } from "./api/session";
import { Announcer } from "./components/Announcer";
import { Dialog } from "./components/Dialog";
import { NetworkBanner } from "./components/NetworkBanner";
import { useT, type Key } from "./i18n";
import { DataPage } from "./pages/data/DataPage";
import { DevicesPage } from "./pages/devices/DevicesPage";
import { ExplorePage } from "./pages/explore/ExplorePage";
import { LivePage } from "./pages/live/LivePage";
import { OverviewPage } from "./pages/overview/OverviewPage";
import { RightsPage } from "./pages/rights/RightsPage";
import { SettingsPage } from "./pages/settings/SettingsPage";
import { SignInForm } from "./pages/signin/SignInForm";
import { SignInPage } from "./pages/signin/SignInPage";
import { Link, useLocation } from "./router";
import { usePageTitle } from "./usePageTitle";

const NAV: { path: string; key: Key }[] = [
  { path: "/", key: "navOverview" },
  { path: "/explore", key: "navExplore" },
  { path: "/live", key: "navLive" },
  { path: "/devices", key: "navDevices" },
  { path: "/data", key: "navData" },
  { path: "/rights", key: "navRights" },
  { path: "/settings", key: "navSettings" },
];

function NotFound() {
  const t = useT();
  usePageTitle(t("notFoundTitle"));
  return (
    <>
      <h1>{t("notFoundTitle")}</h1>
      <p>{t("notFoundBody")}</p>
      <p>
        <Link href="/">{t("goHome")}</Link>
      </p>
    </>
  );
}

function route(path: string): ReactNode {
  switch (path) {
    case "/":
      return <OverviewPage />;
    case "/explore":
      return <ExplorePage />;
    case "/live":
      return <LivePage />;
    case "/devices":
      return <DevicesPage />;
    case "/data":
      return <DataPage />;
    case "/rights":
      return <RightsPage />;
    case "/settings":
      return <SettingsPage />;
    case "/signin":
      return <OverviewPage />;
    default:
      return <NotFound />;
  }
}

export function App() {
  const t = useT();
  const session = useSession();
  const { path } = useLocation();
  const mainRef = useRef<HTMLElement>(null);
  const firstPath = useRef(path);

  useEffect(() => {
    void checkSession();
  }, []);

  // After an in-page navigation, move focus to the new content.
  useEffect(() => {
    if (path !== firstPath.current) {
      firstPath.current = "";
      mainRef.current?.focus();
    }
  }, [path]);

  const signed = session.status === "signed" || session.status === "expired";
  let content: ReactNode;
  if (session.status === "loading") content = <p role="status">{t("loading")}</p>;
  else if (!signed) content = <SignInPage />;
  else content = route(path);

  return (
    <>
      <a className="skip-link" href="#main">
        {t("skipToContent")}
      </a>
      <header className="app-header">
        <div className="brand">
          <Link href="/">{t("appName")}</Link>
        </div>
        {signed && (
          <nav aria-label={t("navMain")} className="nav">
            <ul>
              {NAV.map((n) => (
                <li key={n.path}>
                  <Link href={n.path} aria-current={path === n.path ? "page" : undefined}>
                    {t(n.key)}
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
        )}
        {signed && (
          <div className="account">
            <span className="owner">{t("signedInAs", { name: session.owner })}</span>
            <button type="button" className="btn-ghost" onClick={() => void signOut()}>
              {t("signOut")}
            </button>
          </div>
        )}
      </header>
      <NetworkBanner />
      <main id="main" ref={mainRef} tabIndex={-1}>
        {content}
      </main>
      {session.status === "expired" && (
        <Dialog title={t("signInAgainTitle")} onClose={() => {}} required>
          <p>{t("signInAgainBody")}</p>
          <SignInForm allowSignUp={false} initialName={session.owner} showTitle={false} />
        </Dialog>
      )}
      <Announcer />
    </>
  );
}
