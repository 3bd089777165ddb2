import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { ApiError, api } from "../../api/client";
import { signIn } from "../../api/session";
import { problemMessage } from "../../components/ErrorText";
import { useT, type T } from "../../i18n";

function signInError(e: unknown, t: T, mode: "in" | "up"): string {
  if (e instanceof ApiError) {
    if (e.status === 429) return t("errThrottled", { s: e.retryAfter ?? "?" });
    if (mode === "in" && e.status === 401) return t("errWrongPassword");
    if (mode === "up" && e.status === 409) return t("errNameTaken");
    if (mode === "up" && e.status === 403) return [t("errSignupOff"), e.detail].filter(Boolean).join(" ");
  }
  return problemMessage(e, t);
}

interface Props {
  /** Show the sign-up toggle (not in the re-auth dialog). */
  allowSignUp?: boolean;
  initialName?: string;
  onSignedIn?: () => void;
  /** Heading level for the form title (h1 on the page, none in a dialog). */
  showTitle?: boolean;
}

export function SignInForm({ allowSignUp = true, initialName = "", onSignedIn, showTitle = true }: Props) {
  const t = useT();
  const [mode, setMode] = useState<"in" | "up">("in");
  const [name, setName] = useState(initialName);
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState("");
  const id = useId();
  const pwRef = useRef<HTMLInputElement>(null);
  // Re-auth: the name is known, so start in the password field (after the
  // dialog has placed its initial focus).
  useEffect(() => {
    if (!initialName) return;
    const r = requestAnimationFrame(() => pwRef.current?.focus());
    return () => cancelAnimationFrame(r);
  }, [initialName]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (mode === "up") {
        await api.signup(name, password);
        setNote(t("signedUp"));
      }
      await signIn(name, password);
      onSignedIn?.();
    } catch (err) {
      setError(signInError(err, t, mode));
      setNote("");
    } finally {
      setBusy(false);
    }
  };

  const errId = `${id}-err`;
  const hintId = `${id}-hint`;
  return (
    <form className="auth-form" onSubmit={submit} noValidate>
      {showTitle && <h1>{mode === "in" ? t("signInTitle") : t("signUpTitle")}</h1>}
      <div className="field">
        <label htmlFor={`${id}-name`}>{t("name")}</label>
        <input
          id={`${id}-name`}
          name="username"
          autoComplete="username"
          required
          value={name}
          onChange={(e) => setName(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? errId : undefined}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-pw`}>{t("password")}</label>
        <input
          ref={pwRef}
          id={`${id}-pw`}
          name="password"
          type="password"
          autoComplete={mode === "in" ? "current-password" : "new-password"}
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={[mode === "up" ? hintId : "", error ? errId : ""].filter(Boolean).join(" ") || undefined}
        />
        {mode === "up" && (
          <p className="hint" id={hintId}>
            {t("passwordHint")}
          </p>
        )}
      </div>
      <div role="alert" id={errId} className={error ? "error" : undefined}>
        {error}
      </div>
      <p role="status" className="note">
        {note}
      </p>
      <button type="submit" className="btn-primary" disabled={busy || !name || !password}>
        {mode === "in" ? t("signInButton") : t("signUpButton")}
      </button>
      {allowSignUp && (
        <p className="switch">
          {mode === "in" ? t("noAccount") : t("haveAccount")}{" "}
          <button
            type="button"
            className="btn-link"
            onClick={() => {
              setMode(mode === "in" ? "up" : "in");
              setError("");
            }}
          >
            {mode === "in" ? t("switchToSignUp") : t("switchToSignIn")}
          </button>
        </p>
      )}
    </form>
  );
}
