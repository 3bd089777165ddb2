import { useSession } from "../../api/session";
import { navigate, useLocation } from "../../router";
import { SignInForm } from "./SignInForm";

/** Shown at /signin, and in place of any page while nobody is signed in. */
export function SignInPage() {
  const { path, search } = useLocation();
  const session = useSession();
  // Announced where it was decided (the Announcer); shown here so it stays readable.
  const notice = session.status === "anon" ? session.notice : undefined;
  const done = () => {
    // Stay on the route the person wanted; /signin?next=/explore goes there.
    if (path === "/signin") {
      const next = new URLSearchParams(search).get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
    }
  };
  return (
    <div className="auth-page">
      <div className="auth-column">
        {notice && (
          <p className="notice-box" data-testid="signin-notice">
            {notice}
          </p>
        )}
        <SignInForm onSignedIn={done} />
      </div>
    </div>
  );
}
