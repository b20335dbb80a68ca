/* dr_report_html.h - renders a report.json as one self-contained report.html:
 * the embedded page template plus the JSON. Backtests (and any report without
 * a "feed" object) get src/report_template.html; the closed-loop demo's report
 * (a top-level "feed" object) gets src/report_feed_template.html. */
#ifndef DR_REPORT_HTML_H
#define DR_REPORT_HTML_H

#include <stddef.h>

/* Largest report.json accepted, in bytes. */
#define DR_REPORT_HTML_MAX_JSON ((size_t)64 << 20)

/* Reads json_path (a regular, non-empty file of at most
 * DR_REPORT_HTML_MAX_JSON bytes that starts with '{'), picks the page
 * template (the feed page when the top-level object's "feed" key holds an
 * object, else the backtest page), embeds the JSON in it with "</" escaped as
 * "<\/" and "<!--" as "\u003c!--", and writes the page to html_path through a
 * temporary file in the same folder that is renamed over it. The JSON itself
 * is not validated: the page's script shows a parse error instead of plots.
 * Returns 0, or DR_EIO (cannot read or write), DR_EINVAL (empty, too big, not
 * an object, not a regular file) or DR_ENOMEM, with a message naming the file
 * in errstr. */
int dr_report_html_write(const char *json_path, const char *html_path,
                         char *errstr, size_t errstr_size);

/* dr_report_html_write(DIR/report.json, DIR/report.html) (trailing slashes of
 * dir ignored): what `driftrec report DIR` does, for the demo and the replay
 * to call once their report.json is written and closed. Same returns, plus
 * DR_EINVAL for an empty dir. */
int dr_report_html_write_dir(const char *dir, char *errstr, size_t errstr_size);

#endif /* DR_REPORT_HTML_H */
