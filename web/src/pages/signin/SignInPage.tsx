import { navigate, useLocation } from "../../router";
import { SignInForm } from "./SignInForm";

/** Shown at /signin, and in place of any page while nobody is signed in. */
export function SignInPage() {
  const { path, search } = useLocation();
  const done = () => {
    // Stay on the route the person wanted; /signin?next=/explore goes there.
    if (path === "/signin") {
      const next = new URLSearchParams(search).get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
    }
  };
  return (
    <div className="auth-page">
      <SignInForm onSignedIn={done} />
    </div>
  );
}
