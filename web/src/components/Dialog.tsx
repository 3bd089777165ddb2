// A modal dialog on the native <dialog>: showModal() makes the rest of the
// page inert (focus stays inside) and Escape closes it.
import { useEffect, useId, useRef, type ReactNode } from "react";

interface Props {
  title: string;
  onClose: () => void;
  children: ReactNode;
  /** Escape and the close button are refused while true (e.g. re-auth). */
  required?: boolean;
  closeLabel?: string;
  className?: string;
}

export function Dialog({ title, onClose, children, required = false, closeLabel = "Close", className }: Props) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const onCloseRef = useRef(onClose);
  onCloseRef.current = onClose;

  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    const opener = document.activeElement as HTMLElement | null;
    if (!d.open) d.showModal();
    const onCancel = (e: Event) => {
      e.preventDefault();
      if (!required) onCloseRef.current();
    };
    d.addEventListener("cancel", onCancel);
    return () => {
      d.removeEventListener("cancel", onCancel);
      if (d.open) d.close();
      if (opener && document.contains(opener)) opener.focus();
    };
  }, [required]);

  return (
    <dialog ref={ref} aria-labelledby={titleId} className={className ? `dialog ${className}` : "dialog"}>
      <div className="dialog-head">
        <h2 id={titleId}>{title}</h2>
        {!required && (
          <button type="button" className="btn-ghost" onClick={() => onCloseRef.current()}>
            {closeLabel}
          </button>
        )}
      </div>
      {children}
    </dialog>
  );
}
