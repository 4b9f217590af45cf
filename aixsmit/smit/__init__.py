"""SMIT's screen objects as data: menus, selectors, dialogs; command building; smit.log/script."""
