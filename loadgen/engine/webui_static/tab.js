// Lays loadgen's live panel (/loadgen/panel) over the body of Locust's "Sandboxes" tab while that
// tab is selected. The panel lives in an iframe outside Locust's React tree, so Locust's own
// rendering never touches it; it is placed under the tab bar and sized to its content.
(function () {
  var frame = null;
  function sandboxesTab() {
    var tabs = document.querySelectorAll('[role="tab"]');
    for (var i = 0; i < tabs.length; i++) {
      if (tabs[i].textContent.trim() === "Sandboxes") return tabs[i];
    }
    return null;
  }
  function place() {
    var tab = sandboxesTab();
    var shown = tab && tab.getAttribute("aria-selected") === "true";
    if (!shown) {
      if (frame) frame.style.display = "none";
      return;
    }
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = "loadgen-panel";
      frame.title = "Sandboxes";
      frame.src = "./loadgen/panel";
      frame.style.cssText = "position:absolute;left:0;width:100%;border:0;background:#fff;z-index:1100";
      document.body.appendChild(frame);
    }
    var bar = tab.closest('[role="tablist"]') || tab;
    var top = bar.getBoundingClientRect().bottom + window.scrollY + 4;
    frame.style.top = top + "px";
    var doc = frame.contentDocument;
    var height = doc && doc.body ? doc.body.scrollHeight + 24 : 0;
    frame.style.height = Math.max(height, window.innerHeight - top) + "px";
    frame.style.display = "block";
  }
  setInterval(place, 250);
  window.addEventListener("resize", place);
})();
