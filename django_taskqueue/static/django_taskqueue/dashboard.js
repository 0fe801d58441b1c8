/* The task queue dashboard: refresh the figures every few seconds without reloading the page,
   and ask before a purge. No dependencies. */
"use strict";
(function () {
    document.addEventListener("submit", function (event) {
        var message = event.target.getAttribute("data-confirm");
        if (message && !window.confirm(message)) {
            event.preventDefault();
        }
    });

    var live = document.getElementById("tq-live");
    if (!live || !window.fetch) {
        return;
    }
    var url = live.getAttribute("data-refresh-url");
    var every = 1000 * parseFloat(live.getAttribute("data-refresh-seconds") || "5");
    var refreshes = 0;
    var busy = false;

    function refresh() {
        // A hidden tab costs the server nothing; it catches up when shown again.
        if (busy || document.hidden) {
            return;
        }
        busy = true;
        fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
            .then(function (response) {
                if (!response.ok) {
                    throw new Error("HTTP " + response.status);
                }
                return response.text();
            })
            .then(function (html) {
                live.innerHTML = html;
                refreshes += 1;
                live.setAttribute("data-refreshes", String(refreshes));
                live.removeAttribute("data-stale");
            })
            .catch(function () {
                live.setAttribute("data-stale", "true");
            })
            .finally(function () {
                busy = false;
            });
    }

    window.setInterval(refresh, every);
    document.addEventListener("visibilitychange", refresh);
}());
