import { useEffect, useRef, type RefObject } from "react";
import { announce } from "../../components/Announcer";
import { useT } from "../../i18n";
import type { Paged } from "./usePaged";

/**
 * "Show more" under a paged list. It stays enabled while loading (a disabled button would
 * drop the keyboard focus); once the last page is in and the button goes, focus moves to the
 * list it extended.
 */
export function ShowMore<T>({ paged, after }: { paged: Paged<T>; after: RefObject<HTMLElement | null> }) {
  const t = useT();
  const clicked = useRef(false);
  useEffect(() => {
    if (clicked.current && !paged.more) {
      clicked.current = false;
      after.current?.focus();
      announce(t("allShown"));
    }
  }, [paged.more, after, t]);
  if (!paged.more) return null;
  return (
    <p>
      <button
        type="button"
        aria-busy={paged.loading || undefined}
        onClick={() => {
          if (paged.loading) return;
          clicked.current = true;
          void paged.loadMore();
        }}
      >
        {t("showMore")}
      </button>
    </p>
  );
}
