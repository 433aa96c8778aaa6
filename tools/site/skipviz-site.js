// Accessibility fixes to the theme's markup, found by the axe-core audit (tests/browser/test_site.py):
// a control's accessible name must contain its visible text, but the theme's search buttons are
// labelled "Search" while showing "Search Ctrl + K", and MyST-NB's "Show code cell source"
// toggles carry another label. Without the aria-label the name is the visible text itself.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".search-button-field[aria-label], details > summary[aria-label]").forEach(
    function (el) { el.removeAttribute("aria-label"); });
});
