// Accessibility fixes to the theme's markup, found by the axe-core audit (tests/browser/test_site.py):
// a control's accessible name must contain its visible text, but the theme's search buttons are
// labelled "Search" while showing "Search Ctrl + K", and MyST-NB's "Show code cell source"
// toggles carry another label. Without the aria-label the name is the visible text itself.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".search-button-field[aria-label], details > summary[aria-label]").forEach(
    function (el) { el.removeAttribute("aria-label"); });
});

// The theme binds its sidebar behaviour to the first .primary-toggle / .secondary-toggle only (in
// the header, hidden on a phone); the buttons in the article's header did nothing. They pass their
// clicks on to the bound ones.
document.addEventListener("DOMContentLoaded", function () {
  ["primary", "secondary"].forEach(function (side) {
    var buttons = document.querySelectorAll("." + side + "-toggle");
    Array.prototype.slice.call(buttons, 1).forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        event.stopPropagation();
        buttons[0].click();
      });
    });
  });
});
