import { ApiError } from "../api/client";
import { useT, type T } from "../i18n";

export function problemMessage(e: unknown, t: T): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return t("networkError");
    return e.detail || e.title || `HTTP ${e.status}`;
  }
  return String(e);
}

/** A refused action: the server's problem detail, next to the control. */
export function ErrorText({ error, id }: { error: unknown; id?: string }) {
  const t = useT();
  if (!error) return null;
  return (
    <p className="error" role="alert" id={id}>
      {problemMessage(error, t)}
    </p>
  );
}
